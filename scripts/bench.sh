#!/usr/bin/env bash
# The benchmark: this project vs dicomweb-client vs curl against a local Orthanc it starts itself.
# Writes benchmarks/results/bench.md and bench.json. Options go to benchmarks/run.py (--runs, --scale, --cases).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
missing=()
for package in curl time; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
.venv/bin/python -m pip install -q -e '.[test,bench]' 2>&1 | grep -v "^WARNING: Location" >&2 || true
exec .venv/bin/python -m benchmarks.run "$@"
