"""The fuzz tier against the real Orthanc (issue 18): a valid CT instance with one attribute set to a
malformed value (hypothesis picks the attribute and the value), stored, then read back through the tools an
agent uses on it, through the MCP server in memory. Each call succeeds or fails with a worded error, never
the SDK's bare "Error executing tool X", and no call leaves a partial file. Derandomized: CI runs the same
examples every time, and a failure prints its example."""

from __future__ import annotations

import struct
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, assume, example, given, note, settings
from hypothesis import strategies as st

from dicomweb_mcp import Config
from tests.support.malformed import Mutation, malformed_ct, raw_value
from tests.support.mcp import call, text
from tests.support.orthanc import Orthanc

_US = ("Rows", "Columns", "BitsAllocated", "BitsStored", "SamplesPerPixel", "PixelRepresentation")
_IS = ("NumberOfFrames", "InstanceNumber")
_DS = ("WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept")
_BAD_NUMBERS = ["1A", "abc", "NaN", "inf", "-inf", "", " ", "-1", "0", "2.5", "1e308", "1000000000", "1\\x"]


def _us(keyword: str) -> st.SearchStrategy[Mutation]:
    return st.one_of(
        st.sampled_from([0, 1, 2, 3, 7, 12, 24, 32, 64, 65535]).map(lambda v: raw_value(keyword, v)),
        st.integers(0, 65535).map(lambda v: struct.pack("<H", v)),
        st.lists(st.integers(0, 65535), min_size=2, max_size=3).map(
            lambda vs: struct.pack(f"<{len(vs)}H", *vs)
        ),
    ).map(lambda value: Mutation(keyword, value))


def _text(keyword: str, bad: list[str], *, max_size: int = 20) -> st.SearchStrategy[Mutation]:
    return st.one_of(st.sampled_from(bad), st.text(st.characters(max_codepoint=255), max_size=max_size)).map(
        lambda value: Mutation(keyword, raw_value(keyword, value))
    )


def _number(keyword: str) -> st.SearchStrategy[Mutation]:
    floats = st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f)[:16])
    integers = st.integers(-(10**12), 10**12).map(str)
    return st.one_of(st.sampled_from(_BAD_NUMBERS), integers, floats).map(
        lambda value: Mutation(keyword, raw_value(keyword, value))
    )


MUTATIONS: st.SearchStrategy[Mutation] = st.one_of(
    *(_us(k) for k in _US),
    *(_number(k) for k in (*_IS, *_DS)),
    _us("Rows").map(lambda m: Mutation("Rows", b"1A", "IS")),  # text where a binary US belongs
    _text(
        "PhotometricInterpretation",
        ["MONOCHROME3", "", "RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "monochrome2", "\x01\x02"],
    ),
    _text(
        "PatientName", ["\x00\x1b[31mX", "A" * 1000, "^^^^^=^^==", "\xff\xfe\xfd", "Doe\r\nJohn"], max_size=80
    ),
    _text("StudyDate", ["2024-13-45", "abcdefgh", "99999999", "", "20241301", "0"]),
    st.integers(0, 4096).map(lambda n: Mutation("PixelData", str(n).encode())),  # 2048 bytes is whole
)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def fuzz_config(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> Config:
    orthanc.clear()
    return Config.single(
        url=orthanc.dicomweb_url, download_dir=tmp_path_factory.mktemp("fuzz") / "downloads", timeout=30
    )


def worded(tool: str, message: str) -> bool:
    """An error an agent can act on: the tool's name, then words saying what went wrong."""
    prefix = f"Error executing tool {tool}"
    rest = message.strip().removeprefix(prefix).lstrip(": ")
    return message.strip().startswith(prefix) and sum(word.isalpha() for word in rest.split()) >= 3


async def _through_the_tools(config: Config, directory: Path, mutation: Mutation) -> None:
    instance = malformed_ct(directory, mutation)
    stored = await call(config, "store_instances", {"paths": [str(instance.path)]})
    counts = (stored.structured_content or {}).get("counts", {})
    assume(counts.get("stored") == 1)  # values Orthanc itself refuses never reach the other tools
    reference = instance.reference
    calls = [
        ("get_study_overview", {"study_uid": instance.study_uid, "show": True}),
        ("retrieve_rendered", reference),
        ("retrieve_metadata", reference),
        ("read_report", reference),  # an image: refused by its SOP class, in words, whatever it holds
        ("search_instances", {"study_uid": instance.study_uid}),
        ("retrieve_instances", {**reference, "deidentify": True}),
    ]
    for tool, arguments in calls:
        result = await call(config, tool, arguments)
        message = text(result)
        note(f"{tool}: {'error' if result.is_error else 'ok'}: {message[:300]}")
        assert not result.is_error or worded(tool, message), f"{tool} failed without saying why: {message!r}"
        partial = list(config.download_dir.rglob("*.partial"))
        assert not partial, f"{tool} left {partial}"


@FUZZ
@given(mutation=MUTATIONS)
@example(Mutation("NumberOfFrames", b"1A"))  # issue 18's own case
@example(Mutation("Rows", struct.pack("<H", 0)))  # Orthanc drops the connection when asked to render it
@example(Mutation("PhotometricInterpretation", b"PALETTE COLOR"))
def test_malformed_attributes_give_a_result_or_a_worded_error(
    fuzz_config: Config, tmp_path_factory: pytest.TempPathFactory, mutation: Mutation
) -> None:
    note(f"mutation: {mutation}")
    directory = tmp_path_factory.mktemp("instances")
    anyio.run(_through_the_tools, fuzz_config, directory, mutation)


def test_the_worded_check_refuses_the_bare_message() -> None:
    assert not worded("retrieve_rendered", "Error executing tool retrieve_rendered")
    assert worded(
        "retrieve_rendered", "Error executing tool retrieve_rendered: its Rows is 0 (an image needs one)."
    )
