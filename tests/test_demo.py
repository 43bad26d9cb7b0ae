"""The README's demo runs end to end (it is the first thing a new user tries)."""

from __future__ import annotations

import sys

import anyio
import pytest

from tests.support.samples import REPO

# scripts.demo starts its own Orthanc (the test runner's, from tests/support/orthanc.py).
pytestmark = [pytest.mark.anyio, pytest.mark.orthanc]


async def test_demo_walks_the_tutorial() -> None:
    result = await anyio.run_process([sys.executable, "-m", "scripts.demo"], cwd=REPO, check=False)
    output = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert "counts {'stored': 1, 'already_present': 0, 'failed': 0, 'skipped': 0}" in output
    assert "1 frame(s), 2,892,945 bytes" in output
    assert "deleted study via orthanc-rest" in output
    assert output.rstrip().endswith("Demo complete: Orthanc stopped.")
