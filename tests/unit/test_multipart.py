"""dicomweb/multipart.py: the decoder fed in-memory bodies split every which way, and the encoder read back.

tests/test_multipart.py covers random chunking, padding and the file body's length; these pin the edges:
every split point of the delimiter, each malformed shape with its own error, headers, and the reader over
an httpx response from a MockTransport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dicomweb_mcp.dicomweb.multipart import (
    DATA,
    END,
    START,
    MultipartDecoder,
    MultipartFileBody,
    MultipartReader,
    boundary_of,
    parse_content_type,
)
from dicomweb_mcp.errors import ProtocolError

BOUNDARY = b"b0und4ry"


def body_of(parts: Iterable[tuple[str, bytes]], *, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    """A multipart body: each part is (its header block, its payload)."""
    out = preamble
    for headers, payload in parts:
        out += b"--" + BOUNDARY + b"\r\n" + headers.encode() + b"\r\n" + payload + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n" + epilogue


def feed_all(chunks: Iterable[bytes], boundary: bytes = BOUNDARY) -> list[tuple[dict[str, str], bytes]]:
    """Decode ``chunks`` into (headers, payload) pairs, checking the END events match the START events."""
    decoder = MultipartDecoder(boundary)
    parts: list[tuple[dict[str, str], bytes]] = []
    open_part = False
    for chunk in chunks:
        for kind, payload in decoder.feed(chunk):
            if kind == START:
                assert not open_part
                parts.append((dict(payload), b""))  # type: ignore[call-overload]
                open_part = True
            elif kind == DATA:
                headers, data = parts[-1]
                parts[-1] = (headers, data + bytes(payload))  # type: ignore[arg-type]
            else:
                assert kind == END and open_part
                open_part = False
    decoder.close()
    assert decoder.done and not open_part
    return parts


PAYLOADS = [b"first\r\npayload", b"", b"--b0und4r not quite", b"\r\n--b0und4r-y? \r\n-- \x00\xff\r"]
PAIRS = [(f"Content-Type: application/dicom\r\nX-Index: {i}\r\n", p) for i, p in enumerate(PAYLOADS)]
BODY = body_of(PAIRS, preamble=b"ignore me\r\n", epilogue=b"and me too")


def test_every_split_point_gives_the_same_parts() -> None:
    # One test over all ~300 split points: the delimiter, CRLFs and headers each get cut everywhere.
    for split in range(len(BODY) + 1):
        parts = feed_all([BODY[:split], BODY[split:]])
        assert [p for _, p in parts] == PAYLOADS, split
        assert [h["x-index"] for h, _ in parts] == [str(i) for i in range(len(PAYLOADS))], split


def test_every_pair_of_split_points_around_the_delimiters() -> None:
    # Three chunks, cuts within the first delimiter and the header block after it.
    start = BODY.index(b"--" + BOUNDARY)
    for a in range(start, start + 40):
        for b in range(a, start + 60):
            assert [p for _, p in feed_all([BODY[:a], BODY[a:b], BODY[b:]])] == PAYLOADS, (a, b)


def test_one_byte_at_a_time() -> None:
    parts = feed_all(BODY[i : i + 1] for i in range(len(BODY)))
    assert [p for _, p in parts] == PAYLOADS


def test_header_names_are_lower_cased_and_values_trimmed() -> None:
    body = body_of([("CONTENT-type:   application/dicom  \r\nContent-Location: /x/frames/2\r\n", b"x")])
    [(headers, _)] = feed_all([body])
    assert headers == {"content-type": "application/dicom", "content-location": "/x/frames/2"}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"--" + BOUNDARY + b"\r\n\r\nhalf a part", "inside a part"),
        (b"only a preamble, no boundary at all", "before the closing boundary"),
        (b"", "before the closing boundary"),
        (b"--" + BOUNDARY + b"\r\nContent-Type: x\r\n", "before the closing boundary"),
    ],
)
def test_a_body_without_its_closing_boundary_is_truncated(body: bytes, where: str) -> None:
    decoder = MultipartDecoder(BOUNDARY)
    decoder.feed(body)
    with pytest.raises(ProtocolError, match=f"truncated: it ended {where}"):
        decoder.close()


def test_text_after_a_boundary_is_malformed() -> None:
    with pytest.raises(ProtocolError, match="text after a boundary"):
        feed_all([b"--" + BOUNDARY + b"junk\r\n\r\nx\r\n--" + BOUNDARY + b"--"])


def test_a_header_line_without_a_colon_is_malformed() -> None:
    with pytest.raises(ProtocolError, match="malformed multipart part header line"):
        feed_all([body_of([("no colon here\r\n", b"x")])])


def test_headers_beyond_64_kib_are_refused() -> None:
    with pytest.raises(ProtocolError, match="exceed 64 KiB"):
        feed_all([b"--" + BOUNDARY + b"\r\nX-Long: " + b"a" * (65 * 1024)])


def test_an_endless_boundary_line_is_refused() -> None:
    with pytest.raises(ProtocolError, match="boundary line does not end"):
        feed_all([b"--" + BOUNDARY + b" " * 2000])


@pytest.mark.parametrize(("declared", "actual"), [(3, b"four"), (5, b"four")])
def test_a_part_longer_or_shorter_than_its_content_length_is_refused(declared: int, actual: bytes) -> None:
    with pytest.raises(
        ProtocolError, match=f"length {len(actual)} does not match its Content-Length {declared}"
    ):
        feed_all([body_of([(f"Content-Length: {declared}\r\n", actual)])])


def test_a_non_numeric_content_length_is_ignored() -> None:
    assert feed_all([body_of([("Content-Length: lots\r\n", b"abc")])])[0][1] == b"abc"


@pytest.mark.parametrize("boundary", [b"", b"x" * 201])
def test_empty_or_huge_boundaries_are_refused(boundary: bytes) -> None:
    with pytest.raises(ProtocolError, match="invalid multipart boundary"):
        MultipartDecoder(boundary)


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/related; boundary=abc", b"abc"),
        ('multipart/related; type="application/dicom"; boundary="a;b=c"', b"a;b=c"),
        ("Multipart/Related; BOUNDARY=XyZ", b"XyZ"),
        ('multipart/related; boundary="q\\"uote"', b'q"uote'),
    ],
)
def test_boundary_quoted_or_not(content_type: str, boundary: bytes) -> None:
    assert boundary_of(content_type) == boundary


@pytest.mark.parametrize(
    "content_type",
    ["application/dicom+json", "multipart/related", "multipart/related; boundary=", "text/html; boundary=x"],
)
def test_no_multipart_boundary_is_a_protocol_error(content_type: str) -> None:
    with pytest.raises(ProtocolError, match="expected a multipart response"):
        boundary_of(content_type)


def test_parse_content_type_keeps_quoted_semicolons() -> None:
    media, params = parse_content_type(
        'multipart/related; type="application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"; boundary=x; junk'
    )
    assert media == "multipart/related"
    assert params == {
        "type": "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1",
        "boundary": "x",
    }


async def response_chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    """``body`` as an httpx response stream from a MockTransport, in chunks of ``size`` bytes."""

    class Chunked(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for i in range(0, len(body), size):
                yield body[i : i + size]

    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=Chunked()))
    async with httpx.AsyncClient(transport=transport) as http, http.stream("GET", "http://test/") as response:
        async for chunk in response.aiter_raw():
            yield chunk


@pytest.mark.anyio
@pytest.mark.parametrize("size", [1, 7, 4096])
async def test_reader_over_an_httpx_response(size: int) -> None:
    headers = [
        'Content-Type: application/octet-stream; transfer-syntax="1.2.840.10008.1.2.1"\r\nContent-Location: /s/1/frames/3\r\n',
        "Content-Type: image/jpeg\r\nContent-Location: /s/1/frames/0\r\n",
    ]
    body = body_of(zip(headers, [b"A" * 100, b"B" * 50], strict=True))
    seen = []
    async for part in MultipartReader(response_chunks(body, size), BOUNDARY):
        data = b"".join([bytes(c) async for c in part.aiter_bytes()])
        seen.append((part.media_type, part.transfer_syntax_uid, part.frame_number, data))
    assert seen == [
        ("application/octet-stream", "1.2.840.10008.1.2.1", 3, b"A" * 100),
        ("image/jpeg", None, None, b"B" * 50),  # frame 0 does not exist: frames count from 1
    ]


@pytest.mark.anyio
async def test_reader_raises_on_a_truncated_response() -> None:
    body = body_of([("Content-Type: application/dicom\r\n", b"x" * 10)])[:-12]
    with pytest.raises(ProtocolError, match="truncated"):
        async for part in MultipartReader(response_chunks(body, 5), BOUNDARY):
            async for _ in part.aiter_bytes():
                pass


@pytest.mark.anyio
async def test_a_part_cannot_be_read_after_the_next_one_started() -> None:
    body = body_of([("A: 1\r\n", b"one"), ("A: 2\r\n", b"two")])
    reader = MultipartReader(response_chunks(body, 3), BOUNDARY)
    first = await anext(reader)
    second = await anext(reader)  # skips the first part's bytes
    assert second.headers == {"a": "2"}
    with pytest.raises(RuntimeError, match="current part"):
        await anext(first.aiter_bytes())


@dataclass(frozen=True)
class LocalFile:
    """Any file to send as a part: the body needs its path and its size."""

    path: Path
    size: int


@pytest.mark.anyio
@pytest.mark.parametrize("chunk_size", [1, 3, 1 << 20])
async def test_file_body_round_trips_through_the_decoder(tmp_path: Path, chunk_size: int) -> None:
    contents = [b"\r\n--dicomweb-mcp-" * 20, b"", bytes(range(256)) * 3]
    parts = []
    for i, content in enumerate(contents):
        path = tmp_path / f"{i}.dcm"
        path.write_bytes(content)
        parts.append(LocalFile(path, len(content)))
    encoder = MultipartFileBody(parts, chunk_size=chunk_size)
    raw = b"".join([chunk async for chunk in encoder])
    assert len(raw) == encoder.content_length
    decoded = feed_all([raw], boundary_of(encoder.content_type))
    assert [p for _, p in decoded] == contents
    assert [h["content-type"] for h, _ in decoded] == ["application/dicom"] * len(parts)
    assert [int(h["content-length"]) for h, _ in decoded] == [p.size for p in parts]


@pytest.mark.anyio
async def test_each_encoding_has_a_fresh_boundary(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"a")
    one, two = (MultipartFileBody([LocalFile(path, 1)]) for _ in range(2))
    assert one.boundary != two.boundary
    assert parse_content_type(one.content_type)[1]["type"] == "application/dicom"
