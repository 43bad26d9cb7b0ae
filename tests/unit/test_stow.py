"""dicomweb/stow.py: how files are batched and sent, and what each STOW answer means for each file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from dicomweb_mcp import AuthenticationError
from dicomweb_mcp.config import ServerConfig
from dicomweb_mcp.dicomweb.models import StoreOutcome, StoreStatus
from dicomweb_mcp.dicomweb.stow import (
    ALREADY_STORED,
    FAILURE_REASONS,
    WARNING_REASONS,
    Stow,
    batch_limits,
    batches,
    outcomes_from_response,
)
from dicomweb_mcp.dicomweb.transport import HttpTransport
from dicomweb_mcp.files.dicomfiles import DicomFile
from tests.support.azure import sop_item, stow_response

MIB = 1024 * 1024
REFERENCED, FAILED = "00081199", "00081198"
FAILURE_REASON, WARNING_REASON = "00081197", "00081196"


def files(*sizes: int) -> list[DicomFile]:
    """DicomFiles of the given sizes with distinct instance UIDs (nothing is read from disk here)."""
    return [
        DicomFile(
            Path(f"/nowhere/{i}.dcm"), size, "1.2.3", "1.2.3.4", f"1.2.3.4.{i}", "1.2.840.10008.5.1.4.1.1.7"
        )
        for i, size in enumerate(sizes)
    ]


# --- batches ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("count", "max_count"), [(0, 3), (1, 3), (3, 3), (7, 3), (10, 1)])
def test_batches_by_count_keep_order_and_every_file(count: int, max_count: int) -> None:
    given = files(*[1] * count)
    groups = batches(given, max_count, max_bytes=10**9)
    assert [f for g in groups for f in g] == given
    assert all(len(g) <= max_count for g in groups)
    assert len(groups) == -(-count // max_count)


def test_batches_by_bytes_and_a_large_file_goes_alone() -> None:
    given = files(4, 4, 4, 20, 1, 1)
    groups = batches(given, max_count=100, max_bytes=10)
    assert [[f.size for f in g] for g in groups] == [[4, 4], [4], [20], [1, 1]]


@pytest.mark.parametrize(
    ("n", "concurrency", "max_count", "count"),
    [
        (200, 4, 100, 50),  # spread over the connections
        (200, 1, 100, 100),  # capped by max_count
        (3, 8, 100, 1),  # never zero
        (0, 4, 100, 1),
    ],
)
def test_batch_count(n: int, concurrency: int, max_count: int, count: int) -> None:
    assert batch_limits(files(*[1] * n), concurrency, max_count, 10**9)[0] == count


@pytest.mark.parametrize(
    ("sizes", "concurrency", "max_bytes", "expected"),
    [
        ([100 * MIB] * 4, 4, 256 * MIB, 100 * MIB),
        ([100 * MIB] * 4, 1, 256 * MIB, 256 * MIB),
        ([10] * 4, 4, 256 * MIB, MIB),  # small studies are not split into tiny requests
        ([5 * MIB] * 3, 2, 256 * MIB, 8 * MIB - MIB // 2),  # ceil(15 MiB / 2)
    ],
)
def test_batch_bytes(sizes: list[int], concurrency: int, max_bytes: int, expected: int) -> None:
    assert batch_limits(files(*sizes), concurrency, 100, max_bytes)[1] == expected


# --- outcomes_from_response --------------------------------------------------------------------------------


def test_referenced_instances_are_stored_and_the_rest_failed_as_dropped() -> None:
    sent = files(1, 1, 1)
    answer = stow_response(referenced=[sop_item(sent[0].instance_uid), sop_item(sent[2].instance_uid)])
    outcomes = outcomes_from_response(answer, sent)
    assert [o.file for o in outcomes] == sent
    assert [o.status for o in outcomes] == [StoreStatus.STORED, StoreStatus.FAILED, StoreStatus.STORED]
    assert outcomes[1].reason is not None and "did not acknowledge" in outcomes[1].reason


def test_an_empty_answer_fails_every_file() -> None:
    outcomes = outcomes_from_response({}, files(1, 1))
    assert {o.status for o in outcomes} == {StoreStatus.FAILED}


@pytest.mark.parametrize("code", sorted(set(FAILURE_REASONS) - {ALREADY_STORED}))
def test_failure_codes_are_named(code: int) -> None:
    [sent] = files(1)
    answer = stow_response(failed=[sop_item(sent.instance_uid, **{FAILURE_REASON: code})])
    [outcome] = outcomes_from_response(answer, [sent])
    assert outcome.status is StoreStatus.FAILED and outcome.reason_code == code
    assert outcome.reason == f"{FAILURE_REASONS[code]} (code {code}, 0x{code:04X})"


def test_an_unknown_failure_code_is_shown_in_decimal_and_hex() -> None:
    [sent] = files(1)
    answer = stow_response(failed=[sop_item(sent.instance_uid, **{FAILURE_REASON: 0xABCD})])
    assert outcomes_from_response(answer, [sent])[0].reason == f"code {0xABCD} (0xABCD)"


def test_a_failure_without_a_code_says_so() -> None:
    [sent] = files(1)
    [outcome] = outcomes_from_response(stow_response(failed=[sop_item(sent.instance_uid)]), [sent])
    assert outcome.status is StoreStatus.FAILED and outcome.reason_code is None
    assert outcome.reason == "no reason given"


@pytest.mark.parametrize(
    ("retried", "status"),
    [
        (False, StoreStatus.ALREADY_PRESENT),
        # A retried request's "already stored" can be its own first attempt: that counts as stored. (An
        # instance there before the request is not sent: test_instances_the_server_holds_are_not_sent_again.)
        (True, StoreStatus.STORED),
    ],
)
def test_already_stored_45070(retried: bool, status: StoreStatus) -> None:
    [sent] = files(1)
    answer = stow_response(failed=[sop_item(sent.instance_uid, **{FAILURE_REASON: ALREADY_STORED})])
    [outcome] = outcomes_from_response(answer, [sent], retried=retried)
    assert outcome.status is status


@pytest.mark.parametrize("codes", [[1], [0xB000, 0xB006], [0xB007], [0x1234]])
def test_warnings_on_stored_instances(codes: list[int]) -> None:
    [sent] = files(1)
    item = sop_item(sent.instance_uid)
    item[WARNING_REASON] = {"vr": "US", "Value": codes}
    [outcome] = outcomes_from_response(stow_response(referenced=[item]), [sent])
    assert outcome.status is StoreStatus.STORED
    assert len(outcome.warnings) == len(codes)
    for code, warning in zip(codes, outcome.warnings, strict=True):
        assert f"0x{code:04X}" in warning
        assert (WARNING_REASONS[code] in warning) if code in WARNING_REASONS else warning.startswith("code")


def test_a_failure_without_a_uid_explains_the_unacknowledged_files() -> None:
    sent = files(1, 1)
    anonymous: dict[str, Any] = {FAILURE_REASON: {"vr": "US", "Value": [0xC000]}}
    answer = stow_response(referenced=[sop_item(sent[0].instance_uid)], failed=[anonymous])
    outcomes = outcomes_from_response(answer, sent)
    assert outcomes[0].status is StoreStatus.STORED
    assert outcomes[1].status is StoreStatus.FAILED and outcomes[1].reason_code == 0xC000
    assert outcomes[1].reason is not None and outcomes[1].reason.startswith(FAILURE_REASONS[0xC000])


def test_codes_sent_as_strings_are_read() -> None:
    [sent] = files(1)
    item = sop_item(sent.instance_uid)
    item[FAILURE_REASON] = {"vr": "US", "Value": ["272"]}  # 0x0110 as text, as some servers send it
    [outcome] = outcomes_from_response(stow_response(failed=[item]), [sent])
    assert outcome.reason_code == 0x0110


def test_failed_wins_over_referenced_for_the_same_uid() -> None:
    [sent] = files(1)
    answer = stow_response(
        referenced=[sop_item(sent.instance_uid)],
        failed=[sop_item(sent.instance_uid, **{FAILURE_REASON: 0xA700})],
    )
    assert outcomes_from_response(answer, [sent])[0].status is StoreStatus.FAILED


# --- Stow: the one owner of batching and concurrency ------------------------------------------------------


def on_disk(tmp_path: Path, *sizes: int) -> list[DicomFile]:
    """``files`` with real bytes behind them, for a Stow that sends them."""
    made = [replace(f, path=tmp_path / f.path.name) for f in files(*sizes)]
    for f in made:
        f.path.write_bytes(b"x" * f.size)
    return made


class Archive:
    """A STOW endpoint in memory: answers every request with all its files stored, counting how many
    requests are in flight at once (each request yields to the others before it answers)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[int] = []
        self.in_flight = self.most_in_flight = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        body = await request.aread()
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        self.in_flight -= 1
        self.bodies.append(body.count(b"Content-Type: application/dicom"))
        if self.status != 200:
            return httpx.Response(self.status, text="no")
        uids = [f"1.2.3.4.{i}" for i in range(100)]
        return httpx.Response(200, json=stow_response(referenced=[sop_item(uid) for uid in uids]))


async def stow(archive: Archive, given: list[DicomFile], **options: Any) -> tuple[Stow, list[StoreOutcome]]:
    config = ServerConfig(url="http://127.0.0.1:9/dicom-web", max_retries=0)
    http = HttpTransport(config, auth=None, transport=httpx.MockTransport(archive.handle))
    answered: list[StoreOutcome] = []

    async def on_batch(batch: Any) -> None:
        answered.extend(batch)

    settings: dict[str, Any] = {
        "single_part": False, "batch_count": 2, "batch_bytes": 10**9, "senders": 2, "lookup": None,
        "on_batch": on_batch, "on_sent": None, **options,
    }  # fmt: skip
    async with Stow.open(http, config.url + "/studies", **settings) as sender:
        for file in given:
            sender.add(file)
    await http.aclose()
    return sender, answered


@pytest.mark.anyio
async def test_stow_sends_what_batches_says_within_its_senders(tmp_path: Path) -> None:
    given = on_disk(tmp_path, *[10] * 7)
    archive = Archive()
    sender, answered = await stow(archive, given, senders=2)
    assert sorted(archive.bodies) == sorted(len(b) for b in batches(given, 2, 10**9)) == [1, 2, 2, 2]
    assert archive.most_in_flight == 2  # never more requests than senders, and all of them used
    assert [o.file for o in sender.outcomes] == given  # in the order added
    assert {o.status for o in sender.outcomes} == {StoreStatus.STORED} and len(answered) == 7


@pytest.mark.anyio
async def test_stow_stops_after_an_error_every_request_would_meet(tmp_path: Path) -> None:
    given = on_disk(tmp_path, *[10] * 6)
    sender, _ = await stow(Archive(status=401), given, senders=1)
    assert isinstance(sender.stopped, AuthenticationError)
    outcomes = sender.outcomes
    assert all(o.status is StoreStatus.FAILED and o.error is sender.stopped for o in outcomes)
    assert outcomes[0].reason and outcomes[0].reason.startswith("not stored:")
    assert all((o.reason or "").startswith("not sent, an earlier request failed") for o in outcomes[2:])


@pytest.mark.anyio
async def test_instances_the_server_holds_are_not_sent_again(tmp_path: Path) -> None:
    """A lookup that finds some of a batch's files held: only the others go, and a batch held whole makes
    no request; every file is answered, in order. Orthanc answers 200 to a duplicate (as this archive
    does, whatever it is sent): only the lookup made before storing tells which files were there."""
    given = on_disk(tmp_path, *[10] * 5)
    held = {given[0].instance_uid, given[2].instance_uid, given[3].instance_uid}

    async def lookup(batch: Any) -> set[str]:
        return {f.instance_uid for f in batch} & held

    archive = Archive()
    sender, answered = await stow(archive, given, senders=1, lookup=lookup)
    assert archive.bodies == [1, 1]  # [0 held, 1 sent], [2, 3 held: no request], [4 sent]
    statuses = [o.status for o in sender.outcomes]
    present, stored = StoreStatus.ALREADY_PRESENT, StoreStatus.STORED
    assert statuses == [present, stored, present, present, stored]
    assert [o.file for o in sender.outcomes] == given and len(answered) == 5
