"""The audit trail's pure parts: the file writer (mode, whole lines, rotation, threads), what a line holds
(UIDs, patient IDs, counts, user, client, outcome), and failing closed, without a server."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ValidationError

from dicomweb_mcp.config import Config
from dicomweb_mcp.errors import ConfigError, InvalidInputError, PolicyError, ServerUnreachableError
from dicomweb_mcp.files.audit import AuditLog
from dicomweb_mcp.tools import audit
from dicomweb_mcp.tools.refusals import ToolCrash
from tests.support.entra import signed_in

URL = "http://pacs.example:8042/dicom-web"
STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = "1.2.826.0.1.3680043.8.498.2"
INSTANCE = "1.2.826.0.1.3680043.8.498.3"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(text) for text in path.read_text().splitlines()]


def all_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + "*"))


# ---- the writer ---------------------------------------------------------------------------------


def test_file_is_the_owners_alone_and_lines_are_appended(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writer = AuditLog(path, max_bytes=1_000_000, keep=3)
    writer.check()
    writer.write(b'{"n":1}\n')
    writer.write(b'{"n":2}\n')
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert lines(path) == [{"n": 1}, {"n": 2}]


def test_a_file_others_could_read_is_made_the_owners_alone(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"before":true}\n')
    path.chmod(0o644)
    AuditLog(path, max_bytes=1_000_000, keep=3).check()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert lines(path) == [{"before": True}]  # appended to, never truncated


@pytest.mark.parametrize("where", ["missing-directory", "a-directory"])
def test_a_path_that_cannot_be_written_is_refused(tmp_path: Path, where: str) -> None:
    path = tmp_path / "nowhere" / "audit.jsonl" if where == "missing-directory" else tmp_path
    with pytest.raises(OSError):
        AuditLog(path, max_bytes=1000, keep=1).check()


def test_rotation_by_size_keeps_the_newest_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writer = AuditLog(path, max_bytes=100, keep=2)
    for n in range(20):
        writer.write(json.dumps({"n": n, "pad": "x" * 20}).encode() + b"\n")  # 37 bytes: two a file
    assert [p.name for p in all_files(path)] == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert [line["n"] for line in lines(path)] == [18, 19]
    assert [line["n"] for line in lines(path.with_name("audit.jsonl.1"))] == [16, 17]
    assert [line["n"] for line in lines(path.with_name("audit.jsonl.2"))] == [14, 15]
    for file in all_files(path):
        assert file.stat().st_size <= 100 and stat.S_IMODE(file.stat().st_mode) == 0o600


def test_a_line_longer_than_the_limit_is_written_whole_in_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writer = AuditLog(path, max_bytes=50, keep=5)
    writer.write(b'{"small":1}\n')
    writer.write(json.dumps({"big": "y" * 200}).encode() + b"\n")
    writer.write(b'{"small":2}\n')
    assert lines(path) == [{"small": 2}]
    assert lines(path.with_name("audit.jsonl.1")) == [{"big": "y" * 200}]
    assert lines(path.with_name("audit.jsonl.2")) == [{"small": 1}]


def test_threads_writing_and_rotating_at_once_lose_and_tear_no_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writer = AuditLog(path, max_bytes=100_000, keep=200)
    threads, per_thread = 8, 200
    start = threading.Barrier(threads)

    def run(thread: int) -> None:
        start.wait()
        for n in range(per_thread):
            # Lines of different lengths, some past the pipe-atomic 4 KB, so that a torn one would show.
            writer.write(json.dumps({"t": thread, "n": n, "pad": "z" * (n % 7 * 800)}).encode() + b"\n")

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    written = [line for file in all_files(path) for line in lines(file)]
    assert len(all_files(path)) > 10  # rotated many times while the threads wrote
    assert sorted((line["t"], line["n"]) for line in written) == [
        (t, n) for t in range(threads) for n in range(per_thread)
    ]


def test_the_file_moved_away_is_made_again(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writer = AuditLog(path, max_bytes=1_000_000, keep=1)
    writer.write(b'{"n":1}\n')
    path.rename(tmp_path / "archived.jsonl")  # an operator's own rotation
    writer.write(b'{"n":2}\n')
    assert lines(path) == [{"n": 2}]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ---- what a line holds --------------------------------------------------------------------------


def test_uids_and_patient_ids_are_found_by_field_name_at_any_depth() -> None:
    result = {
        "results": [
            {"study_uid": STUDY, "patient_id": "PAT-1", "patient_name": "Doe^Jane"},
            {"study_uid": STUDY, "patient_id": "PAT-2", "extra_fields": {"PatientID": "PAT-3"}},
        ],
        "patient": {"id": "PAT-4", "name": "Roe^Richard"},  # get_study_overview
        "study_uids": ["1.2.3"],  # store and transfer
        "instances": [{"uid": INSTANCE, "number": 1}],  # viewer_series
        "reports": [{"series_uid": SERIES, "instance_uid": INSTANCE}],
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7",  # a UID, but not one of a study's
        "id": "not a patient",
    }
    assert audit.result_fields(result) == {
        "study_uids": [STUDY, "1.2.3"],
        "series_uids": [SERIES],
        "instance_uids": [INSTANCE],
        "patient_ids": ["PAT-1", "PAT-2", "PAT-3", "PAT-4"],
    }


def test_only_the_named_arguments_are_recorded() -> None:
    arguments = {
        "study_uid": STUDY,
        "series_uid": 12,  # not text: not recorded
        "instance_uid": "9" * 500,  # the caller's text, cut
        "patient_name": "Doe^Jane",
        "paths": ["/home/me/secret"],
    }
    found = audit.argument_uids(arguments)
    assert found == {
        "study_uids": [STUDY],
        "series_uids": [],
        "instance_uids": ["9" * audit.MAX_TEXT],
        "patient_ids": [],
    }


def test_servers_named_by_a_call() -> None:
    assert audit.servers({}, "default") == {"server": "default"}
    assert audit.servers({"server": "research"}, "default") == {"server": "research"}
    transfer = {"source": "clinical", "destination": "research"}
    assert audit.servers(transfer, "default") == transfer


def test_counts_and_bytes() -> None:
    assert audit.result_counts({"returned": 3, "has_more": False}) == {"counts": {"results": 3}}
    assert audit.result_counts({"file_count": 2, "total_bytes": 1234, "files": ["a"]}) == {
        "counts": {"files": 2},
        "bytes": 1234,
    }
    store = {"counts": {"stored": 2, "already_present": 1, "failed": 0, "skipped": 0}}
    assert audit.result_counts(store) == store
    assert audit.result_counts({"size_bytes": 10, "width": 5}) == {"bytes": 10}
    assert audit.result_counts({"path": "/x"}) == {}


def test_a_line_with_thousands_of_uids_lists_a_bounded_number_and_says_how_many_more() -> None:
    uids = [f"1.2.{n}" for n in range(audit.MAX_LISTED + 5)]
    result = CallToolResult(content=[], structured_content={"instances": [{"uid": u} for u in uids]})
    line = audit.finished(
        {"study_uids": [], "series_uids": [], "instance_uids": []}, 0.0, "ok", result=result
    )
    assert line["instance_uids"] == uids[: audit.MAX_LISTED] and line["instance_uids_omitted"] == 5


def test_a_line_is_one_line_of_json_whatever_the_text() -> None:
    data = audit.line({"reason": "two\nlines and \u00e9 and \u2028", "n": 1})
    assert data.endswith(b"\n") and data.count(b"\n") == 1 and data.isascii()
    assert json.loads(data) == {"reason": "two\nlines and \u00e9 and \u2028", "n": 1}


def test_time_is_utc_with_milliseconds() -> None:
    stamp = audit.now()
    assert stamp.endswith("Z") and len(stamp) == len("2025-01-31T09:15:02.345Z") and stamp[19] == "."


class _Arguments(BaseModel):
    limit: int


def _validation_error() -> ValidationError:
    try:
        _Arguments(limit="many")  # type: ignore[arg-type]
    except ValidationError as exc:
        return exc
    raise AssertionError("no validation error")


def _chained(outer: ToolError, cause: BaseException) -> ToolError:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_chained(ToolError("x"), PolicyError("deletion is off")), "refused"),
        (_chained(ToolError("x"), InvalidInputError("bad UID")), "refused"),
        (_chained(ToolError("x"), _validation_error()), "refused"),
        (ToolError("There is no tool named 'nope'."), "refused"),
        (_chained(ToolError("x"), ToolError("The user did not confirm the deletion")), "refused"),
        (_chained(ToolError("x"), ServerUnreachableError("cannot connect")), "error"),
        (_chained(ToolError("x"), PermissionError(13, "Permission denied")), "error"),
        (_chained(ToolCrash("x"), _validation_error()), "error"),  # a fault here, not the caller's input
        (_chained(ToolError("x"), RuntimeError("?")), "error"),
    ],
)
def test_outcome_of_an_error(error: ToolError, expected: str) -> None:
    assert audit.outcome(error) == expected


def _context(*, host: str | None = None, name: str | None = None) -> Any:
    """What the audit reads of the SDK's context: the request (HTTP) and the session's client params."""
    request = SimpleNamespace(client=SimpleNamespace(host=host, port=50123)) if host is not None else None
    info = SimpleNamespace(name=name, version="2.0") if name else None
    session = SimpleNamespace(client_params=SimpleNamespace(client_info=info) if info else None)
    return SimpleNamespace(_request_context=SimpleNamespace(request=request, session=session))


TOKEN = AccessToken(
    token="eyJ-the-bearer-token-itself",
    client_id="host-app",
    scopes=["dicom.read"],
    subject="f3b1c0de-subject",
    claims={"iss": "https://login.example/tenant/v2.0", "name": "Jane Doe", "preferred_username": "jane@x"},
)


def test_the_user_is_the_tokens_subject_and_name_when_oauth_is_on() -> None:
    """The token of the request being served, as the SDK hands it to the message's handler."""
    with signed_in(TOKEN):
        found = audit.user()
    assert found == {
        "source": "oauth",
        "subject": "f3b1c0de-subject",
        "name": "Jane Doe",
        "client_id": "host-app",
        "issuer": "https://login.example/tenant/v2.0",
    }
    assert TOKEN.token not in json.dumps(found)


def test_the_user_is_the_os_user_without_a_token() -> None:
    found = audit.user()
    assert found["source"] == "os" and found["name"]
    with signed_in(None):
        assert audit.user() == found


def test_the_client_is_its_name_version_and_address() -> None:
    assert audit.client(_context(name="claude-code", host="10.0.0.7")) == {
        "name": "claude-code",
        "version": "2.0",
        "address": "10.0.0.7",
    }
    assert audit.client(_context(name="claude-code")) == {"name": "claude-code", "version": "2.0"}
    assert audit.client(None) == {}


# ---- failing closed -----------------------------------------------------------------------------


def _config(path: Path, **settings: Any) -> Config:
    return Config.single(url=URL, audit_log=path, **settings)


def test_start_up_refuses_an_audit_file_it_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "audit.jsonl"
    with pytest.raises(ConfigError) as refused:
        audit.open_audit(_config(path))
    assert str(path) in str(refused.value) and "No such file or directory" in str(refused.value)


def test_start_up_writes_a_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    assert audit.open_audit(Config.single(url=URL)) is None
    assert audit.open_audit(_config(path)) is not None
    (line,) = lines(path)
    assert line["event"] == "server_start" and line["servers"] == ["default"] and line["pid"] == os.getpid()


@pytest.mark.anyio
@pytest.mark.parametrize("tool", ["search_studies", "delete_instances"])
async def test_a_call_that_cannot_be_recorded_is_refused(tmp_path: Path, tool: str) -> None:
    path = tmp_path / "audit.jsonl"
    recorder = audit.open_audit(_config(path))
    assert recorder is not None
    ran: list[str] = []

    async def call(name: str, arguments: dict[str, Any], context: Any) -> CallToolResult:
        ran.append(name)
        return CallToolResult(content=[TextContent(type="text", text="the result")])

    path.unlink()
    path.mkdir()  # what no user, root included, can append to
    with pytest.raises(ToolError) as refused:
        await recorder.record(tool, {"study_uid": STUDY}, None, call)
    message = str(refused.value)
    assert "audit log could not be written" in message and str(path) in message
    # A change to an archive is recorded before it starts: not recorded, not made.
    assert ran == ([] if tool == "delete_instances" else [tool])
    assert ("was not run" in message) == (tool == "delete_instances")


def test_audit_settings_from_the_environment(tmp_path: Path) -> None:
    env = {"DICOMWEB_URL": URL, "DICOMWEB_AUDIT_LOG": str(tmp_path / "a.jsonl")}
    config = Config.from_env(env)
    assert config.audit_log == tmp_path / "a.jsonl"
    assert config.audit_max_bytes == 50_000_000 and config.audit_keep == 10
    config = Config.from_env({**env, "DICOMWEB_AUDIT_MAX_BYTES": "4096", "DICOMWEB_AUDIT_KEEP": "3"})
    assert (config.audit_max_bytes, config.audit_keep) == (4096, 3)
    assert Config.from_env({"DICOMWEB_URL": URL}).audit_log is None
    for variable, value in (("MAX_BYTES", "50MB"), ("MAX_BYTES", "0"), ("KEEP", "0"), ("KEEP", "-1")):
        with pytest.raises(ConfigError, match=f"DICOMWEB_AUDIT_{variable}"):
            Config.from_env({**env, f"DICOMWEB_AUDIT_{variable}": value})
