"""A hostile or broken server: truncated and malformed bodies, hostile UIDs, silence, and a cancelled
download. Nothing half-written is left, nothing is written outside the download directory."""

from __future__ import annotations

import io
import json
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pydicom
import pytest
from mcp import Client

from dicomweb_mcp import Config, DicomWebClient, ServerUnreachableError
from dicomweb_mcp.tools.context import no_progress
from dicomweb_mcp.tools.retrieve import retrieve_instances
from dicomweb_mcp.tools.server import build_server
from tests.support.hostile import Handler, HostileServer, part
from tests.support.mcp import tool_context
from tests.support.orthanc import wait_until
from tests.support.samples import Samples
from tests.support.tutorial import TUTORIAL_STUDY_UID

pytestmark = pytest.mark.anyio

STUDY = TUTORIAL_STUDY_UID  # the parts served are the tutorial files, and a part of another study is refused
B = "hostile-boundary"


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    try:
        yield server
    finally:
        server.close()


def config(server: HostileServer, tmp_path: Path, **extra: Any) -> Config:
    return Config.single(
        url=server.url, download_dir=tmp_path / "dl", server_kind="generic", max_retries=0, **extra
    )  # type: ignore[arg-type]


async def retrieve(cfg: Config) -> tuple[bool, str, Any]:
    async with Client(build_server(cfg)) as client:
        result = await client.call_tool("retrieve_instances", {"study_uid": STUDY})
    return (
        result.is_error,
        " ".join(getattr(b, "text", "") for b in result.content),
        result.structured_content,
    )


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()}


def with_uids(source: Path, **uids: str) -> bytes:
    """A DICOM file whose UIDs are hostile on purpose (pydicom warns; it is the point)."""
    ds = pydicom.dcmread(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword, value in uids.items():
            setattr(ds, keyword, value)
        buffer = io.BytesIO()
        ds.save_as(buffer)
    return buffer.getvalue()


async def test_truncated_body_keeps_only_complete_files(
    hostile: HostileServer, samples: Samples, tmp_path: Path
) -> None:
    blue, red = samples.blue.path.read_bytes(), samples.red.path.read_bytes()

    def truncated(handler: Handler) -> None:
        handler.send_multipart_head(B)
        handler.write(part(blue, B) + part(red, B)[: len(red) // 2])

    hostile.routes[f"/dicom-web/studies/{STUDY}"] = truncated
    cfg = config(hostile, tmp_path)
    is_error, message, _ = await retrieve(cfg)
    assert is_error and "truncated" in message and "1 complete files were kept" in message
    saved = list(cfg.download_dir.rglob("*.dcm"))
    assert [p.read_bytes() for p in saved] == [blue]
    assert not list(cfg.download_dir.rglob("*.partial"))
    manifest = json.loads(next(cfg.download_dir.rglob("manifest.json")).read_text())
    assert manifest["complete"] is False and [Path(f["path"]) for f in manifest["files"]] == saved


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            lambda blue: part(blue, B, length=len(blue) + 10) + f"--{B}--".encode(),
            "does not match its Content-Length",
        ),
        (lambda blue: part(b"<html>not dicom</html>", B) + f"--{B}--".encode(), "not a usable DICOM file"),
        (lambda blue: b"no boundary anywhere", "truncated"),
    ],
    ids=["bad-length", "not-dicom", "no-parts"],
)
async def test_malformed_bodies(
    hostile: HostileServer, samples: Samples, tmp_path: Path, body: Any, expected: str
) -> None:
    blue = samples.blue.path.read_bytes()

    def answer(handler: Handler) -> None:
        handler.send_multipart_head(B)
        handler.write(body(blue))

    hostile.routes[f"/dicom-web/studies/{STUDY}"] = answer
    cfg = config(hostile, tmp_path)
    is_error, message, _ = await retrieve(cfg)
    assert is_error and expected in message
    assert not any(p.suffix in (".dcm", ".partial") for p in files_under(tmp_path))


async def test_not_multipart_at_all(hostile: HostileServer, tmp_path: Path) -> None:
    def answer(handler: Handler) -> None:
        handler.send_multipart_head(B, content_type="application/dicom")
        handler.write(b"DICM")

    hostile.routes[f"/dicom-web/studies/{STUDY}"] = answer
    is_error, message, _ = await retrieve(config(hostile, tmp_path))
    assert is_error and "expected a multipart response" in message


@pytest.mark.parametrize(
    "uids",
    [
        {"StudyInstanceUID": "../../../../../../tmp/evil"},
        {"SeriesInstanceUID": "1.2/../../../evil"},
        {"SOPInstanceUID": "..%2F..%2Fevil"},
        {"SOPInstanceUID": "/etc/passwd"},
    ],
    ids=["study", "series", "instance-encoded", "instance-absolute"],
)
async def test_hostile_uids_never_become_paths(
    hostile: HostileServer, samples: Samples, tmp_path: Path, uids: dict[str, str]
) -> None:
    evil = with_uids(samples.blue.path, **uids)

    def answer(handler: Handler) -> None:
        handler.send_multipart_head(B)
        handler.write(part(evil, B) + f"--{B}--".encode())

    hostile.routes[f"/dicom-web/studies/{STUDY}"] = answer
    before = files_under(tmp_path.parent)
    is_error, message, _ = await retrieve(config(hostile, tmp_path))
    assert is_error and "missing or invalid" in message
    assert files_under(tmp_path.parent) == before  # nothing written anywhere, inside or out
    assert not Path("/tmp/evil").exists()


async def test_malformed_json(hostile: HostileServer, tmp_path: Path) -> None:
    def answer(handler: Handler) -> None:
        body = b'[{"0020000D": {"vr": "UI", "Value": ['
        handler.send_response(200)
        handler.send_header("Content-Type", "application/dicom+json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.write(body)

    hostile.routes[f"/dicom-web/studies/{STUDY}/metadata"] = answer
    async with Client(build_server(config(hostile, tmp_path))) as client:
        result = await client.call_tool("retrieve_metadata", {"study_uid": STUDY})
    assert result.is_error and "not JSON" in result.content[0].text


async def test_hung_server_times_out(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts connections (the kernel does) and never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web"
        cfg = Config.single(url=url, timeout=1, server_kind="generic", download_dir=tmp_path)  # type: ignore[arg-type]
        started = anyio.current_time()
        async with DicomWebClient(cfg.server) as client:
            with pytest.raises(ServerUnreachableError, match="did not answer within 1 s"):
                await client.search_studies()
        elapsed = anyio.current_time() - started
    # A bound, not a speed target: one timeout of 1 s, not a timeout per retry.
    assert elapsed < 5


async def test_cancelled_download_removes_the_partial_file(
    hostile: HostileServer, samples: Samples, tmp_path: Path
) -> None:
    blue, red = samples.blue.path.read_bytes(), samples.red.path.read_bytes()
    stalled = threading.Event()

    def stall(handler: Handler) -> None:
        handler.send_multipart_head(B)
        handler.write(part(blue, B) + part(red, B)[: len(red) // 2])
        stalled.set()
        hostile.release.wait(30)

    hostile.routes[f"/dicom-web/studies/{STUDY}"] = stall
    cfg = config(hostile, tmp_path, timeout=60)
    async with DicomWebClient(cfg.server) as client, anyio.create_task_group() as group:
        group.start_soon(lambda: retrieve_instances(tool_context(cfg, client), no_progress, study_uid=STUDY))

        def partial_written() -> bool:
            return stalled.is_set() and any(p.stat().st_size > 0 for p in cfg.download_dir.rglob("*.partial"))

        assert await anyio.to_thread.run_sync(lambda: wait_until(partial_written, timeout=20))
        group.cancel_scope.cancel()
    hostile.release.set()
    assert not list(cfg.download_dir.rglob("*.partial"))
    saved = list(cfg.download_dir.rglob("*.dcm"))
    assert [p.read_bytes() for p in saved] == [blue]
    manifest = json.loads(next(cfg.download_dir.rglob("manifest.json")).read_text())
    assert manifest["complete"] is False and [Path(f["path"]) for f in manifest["files"]] == saved


async def test_a_part_of_another_study_is_refused(
    hostile: HostileServer, samples: Samples, tmp_path: Path
) -> None:
    def answer(handler: Handler) -> None:
        handler.send_multipart_head(B)
        handler.write(part(samples.blue.path.read_bytes(), B) + f"--{B}--".encode())

    hostile.routes["/dicom-web/studies/1.2.3.4"] = answer
    cfg = config(hostile, tmp_path)
    async with Client(build_server(cfg)) as client:
        result = await client.call_tool("retrieve_instances", {"study_uid": "1.2.3.4"})
    assert (
        result.is_error and f"it belongs to study {samples.study_uid}, not 1.2.3.4" in result.content[0].text
    )  # type: ignore[union-attr]
    assert not list(cfg.download_dir.rglob("*.dcm"))
