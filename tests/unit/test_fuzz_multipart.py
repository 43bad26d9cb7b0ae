"""Property-based tests of what a server's response goes through first: the multipart decoder and the file
store. Whatever the body, its chunking and its boundary, the decoder fails only with its own
malformed-response error (ProtocolError), and the store never leaves a partial file behind nor a saved
file that is not whole. Bounded, derandomized: the same examples every run, a few seconds in all."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Sequence
from io import BytesIO
from pathlib import Path

import anyio
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dicomweb_mcp.dicomweb.multipart import DATA, END, START, MultipartDecoder, MultipartReader, boundary_of
from dicomweb_mcp.errors import NotDicomError, ProtocolError
from dicomweb_mcp.files.store import FileStore
from tests.support.imaging import ct_dataset, uid

FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
BOUNDARY = b"fuzz-b0undary"


def dicom_bytes() -> bytes:
    buffer = BytesIO()
    ds = ct_dataset(np.zeros((4, 4), np.int16), study_uid=uid(), series_uid=uid())
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


DICOM = dicom_bytes()


def body(parts: Sequence[tuple[bytes, bytes]], boundary: bytes = BOUNDARY) -> bytes:
    out = b""
    for headers, payload in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n" + payload + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


HEADER_LINES = st.sampled_from(
    [
        b"Content-Type: application/dicom\r\n",
        b"Content-Length: 10\r\n",
        b"Content-Length: \xb2\r\n",  # a digit to str.isdigit, not to int()
        b"Content-Length: -1\r\n",
        b"no colon here\r\n",
        b"X: \xff\x00\r\n",
        b"",
    ]
)
PAYLOADS = st.one_of(
    st.binary(max_size=64),
    st.just(DICOM),
    st.integers(0, len(DICOM)).map(lambda n: DICOM[:n]),
    st.sampled_from([b"--" + BOUNDARY, b"\r\n--" + BOUNDARY + b"--", b"\r\n\r\n"]),
)
PART = st.tuples(st.lists(HEADER_LINES, max_size=3).map(b"".join), PAYLOADS)
# Mostly near-valid bodies (the interesting shapes), then the same with bytes flipped, cut or arbitrary.
BODIES = st.one_of(
    st.lists(PART, max_size=4).map(body),
    st.tuples(st.lists(PART, min_size=1, max_size=3).map(body), st.integers(0, 10_000)).map(
        lambda t: t[0][: t[1] % (len(t[0]) + 1)]
    ),
    st.tuples(
        st.lists(PART, min_size=1, max_size=3).map(body), st.integers(0, 10_000), st.binary(max_size=8)
    ).map(lambda t: t[0][: t[1] % len(t[0])] + t[2] + t[0][t[1] % len(t[0]) + len(t[2]) :]),
    st.binary(max_size=300),
)
CUTS = st.lists(st.integers(0, 10_000), max_size=8)


@FUZZ
@given(data=BODIES, cuts=CUTS, boundary=st.one_of(st.just(BOUNDARY), st.binary(max_size=220)))
def test_the_decoder_fails_only_with_a_protocol_error(data: bytes, cuts: list[int], boundary: bytes) -> None:
    try:
        decoder = MultipartDecoder(boundary)
        parts: list[bytes] = []
        for chunk in split(data, cuts):
            for kind, payload in decoder.feed(chunk):
                if kind == START:
                    parts.append(b"")
                elif kind == DATA:
                    parts[-1] += bytes(payload)  # type: ignore[arg-type]
                else:
                    assert kind == END
        decoder.close()
    except ProtocolError:
        return
    assert decoder.done


@FUZZ
@given(
    content_type=st.one_of(
        st.text(max_size=60), st.text(max_size=30).map(lambda b: f"multipart/related; boundary={b}")
    )
)
@example("multipart/related; boundary=\u20ac")
def test_a_content_type_gives_a_boundary_or_a_protocol_error(content_type: str) -> None:
    try:
        boundary = boundary_of(content_type)
    except ProtocolError:
        return
    assert boundary


async def _chunks(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def _save_all(root: Path, pieces: list[bytes]) -> list[Path]:
    store = FileStore(root)
    saved: list[Path] = []
    async for part in MultipartReader(_chunks(pieces), BOUNDARY):
        try:
            saved.append((await store.save_instance(part.aiter_bytes(), store.directory())).path)
        except NotDicomError:
            continue
    return saved


@settings(FUZZ, max_examples=150)
@given(parts=st.lists(PART, min_size=1, max_size=3), cut=st.integers(0, 10_000), cuts=CUTS)
def test_the_store_never_leaves_a_partial_file(
    parts: list[tuple[bytes, bytes]], cut: int, cuts: list[int]
) -> None:
    whole = body(parts)
    data = whole[: cut % (len(whole) + 1)] if cut % 3 == 0 else whole  # a third of the bodies cut short
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        try:
            saved = anyio.run(_save_all, root, split(data, cuts))
        except ProtocolError:
            saved = []
        assert not list(root.rglob("*.partial")), "a partial file was left behind"
        payloads = {payload for _, payload in parts}
        for path in saved:
            assert path.read_bytes() in payloads, f"{path.name} is not a whole part"


@pytest.mark.parametrize("length", [b"\xb2", b"\xb9\xb9", "\u0663".encode()])
def test_a_content_length_of_unicode_digits_is_ignored(length: bytes) -> None:
    # str.isdigit() accepts superscripts and other scripts' digits, which int() refuses (ValueError).
    data = body([(b"Content-Length: " + length + b"\r\n", b"payload")])
    decoder = MultipartDecoder(BOUNDARY)
    events = decoder.feed(data)
    decoder.close()
    assert [kind for kind, _ in events] == [START, DATA, END]
