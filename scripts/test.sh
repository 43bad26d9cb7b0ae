#!/usr/bin/env bash
# The project's test command: install what is needed, lint, type-check, then run every test
# (including the ones against a real Orthanc the suite starts itself).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check dicomweb_mcp tests scripts benchmarks
.venv/bin/ruff format --check dicomweb_mcp tests scripts benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
