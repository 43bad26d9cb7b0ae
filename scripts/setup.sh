#!/usr/bin/env bash
# Install what the project needs on a Debian machine: Orthanc with its DICOMweb plugin (for the tests and
# the demo), nginx, chromium (the viewer's browser tests), PostgreSQL (cohort jobs shared by replicas) and a
# virtual environment with the package and its test tools. Safe to run again.
# Arguments name more Debian packages to install the same way (the benchmark's curl and time).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(orthanc orthanc-dicomweb nginx chromium postgresql "$@")
missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    # The Debian packages may start Orthanc, nginx and PostgreSQL as services; the tests run their own.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if command -v service >/dev/null 2>&1; then
        $SUDO service orthanc stop >/dev/null 2>&1 || true
        $SUDO service nginx stop >/dev/null 2>&1 || true
        $SUDO service postgresql stop >/dev/null 2>&1 || true
    fi
fi

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1; then
    # Debian splits venv out of the interpreter package.
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v "^WARNING: Location" >&2 || true
.venv/bin/python -c "import dicomweb_mcp, mcp, pydicom, respx, psycopg_pool" # fail here, clearly, if the install did not work

# The MCP clients other than Python's that the tests connect with (tests/clients): Node and the exact
# versions in the committed lock. Debian's packages when Node or npm is missing.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing nodejs npm" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
CLIENTS=tests/clients
# npm ci deletes and rebuilds node_modules: only when it is missing or the lock changed since the last one.
lock_sum="$(sha256sum "$CLIENTS/package-lock.json" | cut -d' ' -f1)"
stamp="$CLIENTS/node_modules/.installed-from-lock"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
    echo "setup: npm ci in $CLIENTS" >&2
    (cd "$CLIENTS" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$lock_sum" >"$stamp"
fi
# Fail here, clearly, if the clients or the tests' identity provider cannot be loaded.
(cd "$CLIENTS" && node --input-type=module \
    -e 'await import("@modelcontextprotocol/sdk/client/index.js"); await import("@ai-sdk/mcp"); await import("oidc-provider")')
"$CLIENTS/node_modules/.bin/esbuild" --version >/dev/null
chromium --version >/dev/null
