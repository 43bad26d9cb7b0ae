#!/usr/bin/env bash
# The benchmark: this project vs dicomweb-client vs curl against a local Orthanc it starts itself.
# Writes benchmarks/results/bench.md and bench.json. Options go to benchmarks/run.py (--runs, --scale, --cases).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh curl time
.venv/bin/python -m pip install -q -e '.[test,bench]' 2>&1 | grep -v "^WARNING: Location" >&2 || true
# The agent-facing contract and the start-up time first: seconds, against no server.
.venv/bin/python -m benchmarks.contract
.venv/bin/python -m benchmarks.startup --runs 7
# Over a WAN: a shaping proxy on 127.0.0.1 (40 ms RTT, 100 Mbit/s a connection, 1 Gbit/s in all).
.venv/bin/python -m benchmarks.wan --runs 3
# Server to server: transfer_instances against retrieve-then-store and dicomweb-client (loopback, then WAN).
.venv/bin/python -m benchmarks.transfer --runs 3
.venv/bin/python -m benchmarks.transfer --runs 3 --wan --out benchmarks/results/wan-transfer
# A cohort job of 500 small studies between two Orthancs over the WAN, its server's memory, a SIGKILL mid-job.
# It exits 1 on a missed target, as the viewer's does.
missed=0
.venv/bin/python -m benchmarks.cohort --wan || missed=$?
# The study viewer in a real browser: first picture, warm slice, scroll rate (loopback, then WAN). It exits 1
# on a missed target: the rest still runs, and this script fails at the end.
.venv/bin/python -m benchmarks.viewer --runs 3 || missed=$?
.venv/bin/python -m benchmarks.run "$@"
exit "$missed"
