#!/usr/bin/env bash
# The README's demo: install what is needed, then walk the tutorial through the MCP server over stdio
# against a local Orthanc that the demo starts on 127.0.0.1 and stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m scripts.demo
