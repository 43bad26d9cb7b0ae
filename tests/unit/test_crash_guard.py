"""The last guard at the tool boundary: a failure nobody foresaw still reaches the client in words (the
tool, the step, the exception), never as the SDK's bare "Error executing tool X", and is logged with its
traceback."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from dicomweb_mcp.config import Config
from dicomweb_mcp.tools import look
from dicomweb_mcp.tools.refusals import crash_message
from dicomweb_mcp.tools.server import build_server
from tests.support.mcp import text

pytestmark = pytest.mark.anyio


async def broken_overview(*args: Any, **kwargs: Any) -> Any:
    return int("1A")  # as a NumberOfFrames of '1A' once did, deep in a tool


async def test_an_unforeseen_failure_is_worded_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(look, "study_overview", broken_overview)
    config = Config.single(url="http://127.0.0.1:9/dicom-web", download_dir=tmp_path, server_kind="generic")
    with caplog.at_level(logging.ERROR, logger="dicomweb_mcp"):
        async with Client(build_server(config)) as client:
            result = await client.call_tool("get_study_overview", {"study_uid": "1.2.3"})
    assert result.is_error
    message = text(result)
    assert message != "Error executing tool get_study_overview"
    assert message.startswith("Error executing tool get_study_overview: it failed unexpectedly")
    assert "in broken_overview" not in message  # the step is the package's own innermost function
    assert "in get_study_overview with ValueError" in message and "'1A'" in message
    assert "retrieve_metadata" in message
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "dicomweb_mcp"]
    assert record.exc_info is not None and record.exc_info[0] is ValueError


def test_credentials_in_an_exception_never_reach_the_message() -> None:
    try:
        raise RuntimeError("cannot reach https://alice:s3cret@pacs.example/dicom-web")
    except RuntimeError as exc:
        message = crash_message("search_studies", exc)
    assert "s3cret" not in message and "alice" not in message
    assert "https://pacs.example/dicom-web" in message and "RuntimeError" in message
