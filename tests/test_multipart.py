"""The streaming multipart decoder and the STOW body encoder, on bodies built byte by byte."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicomweb_mcp import MultipartDecoder, MultipartReader, ProtocolError
from dicomweb_mcp.dicomweb.multipart import (
    DATA,
    END,
    START,
    MultipartFileBody,
    boundary_of,
    parse_content_type,
)

BOUNDARY = b"3a8e2f-boundary"


def build(
    parts: list[tuple[dict[str, str], bytes]],
    *,
    preamble: bytes = b"",
    epilogue: bytes = b"",
    padding: bytes = b"",
    final_crlf: bool = True,
) -> bytes:
    body = preamble
    for headers, payload in parts:
        body += b"--" + BOUNDARY + padding + b"\r\n"
        body += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
        body += b"\r\n" + payload + b"\r\n"
    body += b"--" + BOUNDARY + b"--" + (b"\r\n" if final_crlf else b"") + epilogue
    return body


def decode(body: bytes, chunk_sizes: list[int] | None = None) -> list[tuple[dict[str, str], bytes]]:
    decoder = MultipartDecoder(BOUNDARY)
    parts: list[tuple[dict[str, str], bytes]] = []
    position, sizes = 0, iter(chunk_sizes or [len(body) or 1])
    while position < len(body):
        size = next(sizes, 1 << 20)
        for kind, payload in decoder.feed(body[position : position + size]):
            if kind == START:
                parts.append((payload, b""))  # type: ignore[arg-type]
            elif kind == DATA:
                headers, data = parts[-1]
                parts[-1] = (headers, data + bytes(payload))  # type: ignore[arg-type]
            else:
                assert kind == END
        position += size
    decoder.close()
    return parts


def tricky_payload(rng: random.Random, size: int) -> bytes:
    """Binary data sprinkled with CRLF, '--' and prefixes of the delimiter, odd length."""
    pieces = [rng.randbytes(rng.randint(0, 50)) for _ in range(size // 40)]
    traps = [b"\r\n", b"\r\n-", b"\r\n--", b"\r\n--" + BOUNDARY[:5], b"--" + BOUNDARY, b"\r\n\r\n"]
    data = b"".join(p + rng.choice(traps) for p in pieces)
    return data if len(data) % 2 else data + b"\x00"


def test_parts_with_and_without_content_length_in_random_chunks() -> None:
    rng = random.Random(20201)
    payloads = [tricky_payload(rng, 3000), b"", tricky_payload(rng, 10), b"x"]
    parts = [
        (
            {"Content-Type": "application/dicom", "Content-Length": str(len(p))}
            if i % 2
            else {"Content-Type": "application/dicom", "Content-Location": f"/x/{i}"},
            p,
        )
        for i, p in enumerate(payloads)
    ]
    body = build(parts)
    expected = [({k.lower(): v for k, v in h.items()}, p) for h, p in parts]
    assert decode(body) == expected
    assert decode(body, [1] * len(body)) == expected
    for _ in range(200):
        sizes = [rng.randint(1, 300) for _ in range(len(body))]
        assert decode(body, sizes) == expected


def test_preamble_padding_epilogue_and_no_final_crlf() -> None:
    parts = [({"Content-Type": "application/octet-stream"}, b"abc")]
    body = build(
        parts,
        preamble=b"this is a preamble\r\n",
        padding=b" \t",
        epilogue=b"trailing words",
        final_crlf=False,
    )
    assert decode(body) == [({"content-type": "application/octet-stream"}, b"abc")]
    assert decode(body, [1] * len(body)) == [({"content-type": "application/octet-stream"}, b"abc")]


def test_part_without_headers() -> None:
    body = b"--" + BOUNDARY + b"\r\n\r\npayload\r\n--" + BOUNDARY + b"--"
    assert decode(body) == [({}, b"payload")]


def test_truncated_body_is_an_error() -> None:
    body = build([({"Content-Type": "application/dicom"}, b"0123456789")])
    for cut in (len(body) - 3, len(body) // 2, 10):
        with pytest.raises(ProtocolError, match="truncated"):
            decode(body[:cut])


def test_content_length_mismatch_is_an_error() -> None:
    body = build([({"Content-Type": "application/dicom", "Content-Length": "11"}, b"0123456789")])
    with pytest.raises(ProtocolError, match="Content-Length"):
        decode(body)


def test_content_type_with_quoted_parameters() -> None:
    value = 'multipart/related; type="application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"; boundary="a;b=c"'
    media_type, params = parse_content_type(value)
    assert media_type == "multipart/related"
    assert params["type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    assert boundary_of(value) == b"a;b=c"
    assert boundary_of("multipart/related; boundary=plain") == b"plain"
    with pytest.raises(ProtocolError, match="multipart"):
        boundary_of("application/dicom+json")


@pytest.mark.anyio
async def test_reader_streams_parts_and_skips_unread_ones() -> None:
    rng = random.Random(7)
    payloads = [tricky_payload(rng, 5000) for _ in range(3)]
    body = build([({"Content-Type": "application/dicom"}, p) for p in payloads])

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 777):
            yield body[start : start + 777]

    seen = []
    async for index, part in _enumerate(MultipartReader(chunks(), BOUNDARY)):
        if index == 1:
            continue  # never read: the reader must skip it
        data = b"".join([bytes(c) async for c in part.aiter_bytes()])
        seen.append(data)
    assert seen == [payloads[0], payloads[2]]


async def _enumerate(reader: MultipartReader) -> AsyncIterator[tuple[int, object]]:
    index = 0
    async for part in reader:
        yield index, part
        index += 1


@dataclass(frozen=True)
class LocalFile:
    """Any file to send as a part: the body needs its path and its size."""

    path: Path
    size: int


@pytest.mark.anyio
async def test_file_body_round_trips_and_announces_its_length(tmp_path: Path) -> None:
    rng = random.Random(3)
    files = []
    for i, size in enumerate([0, 1, 3_000_001, 4097]):
        path = tmp_path / f"f{i}.dcm"
        path.write_bytes(rng.randbytes(size))
        files.append(LocalFile(path, size))
    body = MultipartFileBody(files, chunk_size=65536)
    first = b"".join([c async for c in body])
    second = b"".join([c async for c in body])  # iterable again, for a resend after a 401
    assert first == second
    assert len(first) == body.content_length
    decoded = decode(first.replace(body.boundary.encode(), BOUNDARY))
    assert [p for _, p in decoded] == [f.path.read_bytes() for f in files]
    assert boundary_of(body.content_type) == body.boundary.encode()


@pytest.mark.anyio
async def test_file_body_refuses_a_file_that_shrank(tmp_path: Path) -> None:
    path = tmp_path / "a.dcm"
    path.write_bytes(b"x" * 100)
    body = MultipartFileBody([LocalFile(path, 200)])
    with pytest.raises(ProtocolError, match="shrank"):
        _ = [c async for c in body]
