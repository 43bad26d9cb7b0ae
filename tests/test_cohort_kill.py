"""A cohort job's server killed with SIGKILL midway, as a crash or the kernel's OOM killer would: started again
on the same download directory, the server takes the job up at once (the killed process is known to have
ended, so its lease is not waited for) and finishes it. The destination, behind nginx that records and paces
its requests, holds each instance once and answered no more STOW requests than there are studies. (That a
study stopped between its STOW and its record is not sent again is pinned without a race in
test_cohort.py, which stops a runner exactly there.)"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from dicomweb_mcp import Config, DicomWebClient, collect_dicom_files
from tests.support.identified import make_identified_study
from tests.support.mcp import answer
from tests.support.nginx import Recorder
from tests.support.orthanc import Orthanc, wait_until
from tests.support.served import serving_http

pytestmark = pytest.mark.anyio

STUDIES = 8
PER_STUDY = 2  # instances, one STOW request a study
TOKEN = "cohort-kill-token-7f3a"
# Requests a second at the destination: a study (a lookup and a STOW) takes about half a second there.
PACE = 4


@pytest.fixture
async def studies(orthanc_config: Config, tmp_path: Path) -> list[str]:
    made = [
        make_identified_study(tmp_path / f"study{seed}", series=1, per_series=PER_STUDY, seed=100 + seed)
        for seed in range(STUDIES)
    ]
    async with DicomWebClient(orthanc_config.server) as client:
        files, _ = collect_dicom_files([tmp_path / f"study{seed}" for seed in range(STUDIES)])
        assert len(await client.store_instances(files)) == STUDIES * PER_STUDY
    return [study.study_uid for study in made]


@asynccontextmanager
async def session(url: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=90) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def stores(recorder: Recorder) -> list[str]:
    """The status of each STOW request the destination has answered."""
    return [r.status for r in recorder.requests() if r.method == "POST" and r.path.endswith("/studies")]


async def test_a_job_killed_midway_is_finished_by_the_next_server_and_nothing_is_sent_twice(
    orthanc_config: Config, destination: Orthanc, studies: list[str], tmp_path: Path
) -> None:
    (tmp_path / "nginx").mkdir()
    recorder = Recorder(tmp_path / "nginx", destination.port, rate=f"{PACE}r/s").start()
    try:
        servers = tmp_path / "servers.toml"
        servers.write_text(
            f'[servers.clinical]\nurl = "{orthanc_config.server.url}"\n'
            # Behind nginx Orthanc's Server header is gone: its kind is named, so duplicates are looked up.
            f'[servers.research]\nurl = "{recorder.url}"\nkind = "orthanc"\n'
        )
        env = {
            "PATH": os.environ["PATH"],
            "DICOMWEB_SERVERS": str(servers),
            "DICOMWEB_DOWNLOAD_DIR": str(tmp_path / "downloads"),
            "DICOMWEB_MCP_TOKEN": TOKEN,
            "DICOMWEB_JOB_CONCURRENCY": "1",
        }
        processes: list[subprocess.Popen[bytes]] = []
        with serving_http(env, processes=processes) as url:
            async with session(url) as client:
                job = await answer(
                    client, "start_cohort", study_uids=studies, server="clinical", destination="research"
                )
                # Killed as the destination answers the second study's STOW: its record may not be written yet.
                assert await anyio.to_thread.run_sync(wait_until, lambda: len(stores(recorder)) >= 2, 60)
                os.kill(processes[0].pid, signal.SIGKILL)
            assert processes[0].wait(timeout=20) == -signal.SIGKILL
        assert len(stores(recorder)) < STUDIES, "the job ended before the kill: pace the destination more"

        # The lease is 60 s: a job finished within 45 s was taken up without waiting for it.
        with serving_http(env) as url:
            async with session(url) as client:
                status = await answer(client, "cohort_status", job_id=job["job_id"], wait=45)
        assert status["state"] == "finished", status
        assert (status["studies"]["done"], status["studies"]["failed"]) == (STUDIES, 0)
    finally:
        recorder.stop()

    assert [count for _, count in destination.held_studies().values()] == [PER_STUDY] * STUDIES
    answers = stores(recorder)
    assert answers.count("200") <= STUDIES  # a study the destination answered is not sent again
    assert len(answers) <= STUDIES + 1  # nor any other, but the one request the kill may have cut off
