"""multipart/related both ways, streamed.

Decoding is a small sans-IO state machine (``MultipartDecoder``) wrapped by an async reader
(``MultipartReader``) that yields parts as they arrive and each part's bytes as chunks. The body is
scanned once: every feed searches the new bytes plus a tail shorter than the delimiter, so the work is
linear in the body size and the memory is one network chunk. Encoding (``MultipartFileBody``) streams
files from disk with a Content-Length computed up front, and can be iterated again (for a retry after a
token refresh).

python-multipart's streaming ``MultipartParser`` (0.0.34) was evaluated first. On large parts it is no
faster (both spend their time in ``bytes.find``); on small parts it is much slower; it rejects a
preamble and padding after the first boundary, which RFC 2046 allows; and it does not report a
truncated body, which would let a dropped connection pass for a complete study.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from ..errors import ProtocolError

__all__ = [
    "BodyPart",
    "FileBody",
    "FilePart",
    "MultipartDecoder",
    "MultipartFileBody",
    "MultipartReader",
    "boundary_of",
    "parse_content_type",
]

_CRLF: Final = b"\r\n"
_MAX_HEADER_BLOCK = 64 * 1024
_MAX_PADDING = 1024

# Decoder events: (kind, payload). Tuples keep the hot path free of object construction.
START: Final = 0  # payload: dict of lower-cased header names to values
DATA: Final = 1  # payload: bytes or memoryview (valid until the next feed)
END: Final = 2  # payload: None

_PREAMBLE, _AFTER_BOUNDARY, _HEADERS, _BODY, _DONE = range(5)


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type into its lower-cased media type and parameters.

    Quoted parameter values may contain ``;`` and ``=`` (Orthanc puts the transfer syntax inside the quoted
    ``type``: ``type="application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"``).
    """
    fields: list[str] = []
    current: list[str] = []
    in_quotes = escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and in_quotes:
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
        elif ch == ";" and not in_quotes:
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
    fields.append("".join(current))
    media_type = fields[0].strip().lower()
    params: dict[str, str] = {}
    for item in fields[1:]:
        name, sep, val = item.partition("=")
        if sep:
            params[name.strip().lower()] = val.strip()
    return media_type, params


def boundary_of(content_type: str) -> bytes:
    """The boundary of a multipart Content-Type, quoted or not; ``ProtocolError`` if absent."""
    media_type, params = parse_content_type(content_type)
    boundary = params.get("boundary")
    if not media_type.startswith("multipart/") or not boundary:
        raise ProtocolError(
            f"expected a multipart response with a boundary, got Content-Type {content_type!r}"
        )
    try:
        return boundary.encode("latin-1")
    except UnicodeEncodeError:  # httpx decodes headers as UTF-8 when they are: RFC 2046 allows only ASCII
        raise ProtocolError(f"the multipart boundary {boundary[:80]!r} is not ASCII (RFC 2046)") from None


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(_CRLF):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise ProtocolError(f"malformed multipart part header line {line[:80]!r}")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


class MultipartDecoder:
    """Sans-IO multipart decoder: ``feed(bytes)`` returns events, ``close()`` checks the body was complete.

    Data payloads are slices of an internal buffer and are valid until the next ``feed``.
    """

    def __init__(self, boundary: bytes) -> None:
        if not boundary or len(boundary) > 200:
            raise ProtocolError(f"invalid multipart boundary {boundary[:80]!r}")
        self._delimiter = _CRLF + b"--" + boundary
        # A leading CRLF lets the first boundary (which has none before it) match the same delimiter.
        self._buffer: bytes = _CRLF
        self._state = _PREAMBLE
        self._part_length = 0
        self._expected_length: int | None = None

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> list[tuple[int, object]]:
        buffer = self._buffer + data if self._buffer else data
        view = memoryview(buffer)
        events: list[tuple[int, object]] = []
        delimiter = self._delimiter
        pos = 0
        while True:
            state = self._state
            if state == _BODY:
                index = buffer.find(delimiter, pos)
                if index < 0:
                    # Keep only what could be the start of a delimiter split across chunks.
                    safe = max(pos, len(buffer) - len(delimiter) + 1)
                    if safe > pos:
                        events.append((DATA, view[pos:safe]))
                        self._part_length += safe - pos
                    pos = safe
                    break
                if index > pos:
                    events.append((DATA, view[pos:index]))
                    self._part_length += index - pos
                self._end_part()
                events.append((END, None))
                pos = index + len(delimiter)
                self._state = _AFTER_BOUNDARY
            elif state == _AFTER_BOUNDARY:
                if len(buffer) - pos < 2:
                    break
                if buffer[pos : pos + 2] == b"--":
                    self._state = _DONE
                    pos = len(buffer)  # the epilogue is ignored
                    break
                eol = buffer.find(_CRLF, pos)
                if eol < 0:
                    if len(buffer) - pos > _MAX_PADDING:
                        raise ProtocolError("malformed multipart body: boundary line does not end")
                    break
                if buffer[pos:eol].strip(b" \t"):
                    raise ProtocolError("malformed multipart body: text after a boundary")
                pos = eol + 2
                self._state = _HEADERS
            elif state == _HEADERS:
                if buffer.startswith(_CRLF, pos):  # a part without headers
                    end, block = pos + 2, b""
                else:
                    index = buffer.find(b"\r\n\r\n", pos)
                    if index < 0:
                        if len(buffer) - pos > _MAX_HEADER_BLOCK:
                            raise ProtocolError("malformed multipart body: part headers exceed 64 KiB")
                        break
                    end, block = index + 4, buffer[pos:index]
                headers = _parse_headers(block)
                events.append((START, headers))
                self._start_part(headers)
                pos = end
                self._state = _BODY
            elif state == _PREAMBLE:
                index = buffer.find(delimiter, pos)
                if index < 0:
                    pos = max(pos, len(buffer) - len(delimiter) + 1)
                    break
                pos = index + len(delimiter)
                self._state = _AFTER_BOUNDARY
            else:  # _DONE: ignore the epilogue
                pos = len(buffer)
                break
        self._buffer = buffer[pos:]
        return events

    def close(self) -> None:
        """Call at the end of the body: a missing closing boundary means the body was truncated."""
        if self._state != _DONE:
            where = "inside a part" if self._state == _BODY else "before the closing boundary"
            raise ProtocolError(f"multipart body truncated: it ended {where}")

    def _start_part(self, headers: Mapping[str, str]) -> None:
        self._part_length = 0
        length = headers.get("content-length")
        # isdigit() alone accepts superscripts and other scripts' digits, which int() refuses.
        self._expected_length = int(length) if length and length.isascii() and length.isdigit() else None

    def _end_part(self) -> None:
        if self._expected_length is not None and self._expected_length != self._part_length:
            raise ProtocolError(
                f"multipart part length {self._part_length} does not match its Content-Length "
                f"{self._expected_length}"
            )


@dataclass(eq=False)
class BodyPart:
    """One part of a multipart response; read its bytes once with ``aiter_bytes``."""

    headers: Mapping[str, str]
    _reader: MultipartReader

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def media_type(self) -> str:
        return parse_content_type(self.content_type)[0]

    @property
    def transfer_syntax_uid(self) -> str | None:
        return parse_content_type(self.content_type)[1].get("transfer-syntax")

    @property
    def content_location(self) -> str | None:
        return self.headers.get("content-location")

    @property
    def frame_number(self) -> int | None:
        """The frame a part carries, from a Content-Location ending in ``/frames/N`` (Orthanc sends one)."""
        tail = (self.content_location or "").rstrip("/").rpartition("/frames/")[2]
        return int(tail) if tail.isdigit() and int(tail) > 0 else None

    def aiter_bytes(self) -> AsyncIterator[bytes | memoryview]:
        return self._reader._part_data(self)


class MultipartReader:
    """Async iterator of ``BodyPart`` over a stream of byte chunks (an httpx response's ``aiter_bytes``)."""

    def __init__(self, chunks: AsyncIterator[bytes], boundary: bytes) -> None:
        self._chunks = chunks
        self._decoder = MultipartDecoder(boundary)
        self._events: deque[tuple[int, object]] = deque()
        self._current: BodyPart | None = None
        self._exhausted = False

    def __aiter__(self) -> MultipartReader:
        return self

    async def __anext__(self) -> BodyPart:
        while True:
            event = await self._next_event()
            if event is None:
                raise StopAsyncIteration
            kind, payload = event
            if kind == START:
                assert isinstance(payload, dict)
                self._current = BodyPart(payload, self)
                return self._current
            # DATA or END of a part the caller did not read to its end: skip it.

    async def _part_data(self, part: BodyPart) -> AsyncIterator[bytes | memoryview]:
        if part is not self._current:
            raise RuntimeError("a multipart part can only be read while it is the current part")
        while True:
            event = await self._next_event()
            if event is None:  # pragma: no cover - close() raises first
                return
            kind, payload = event
            if kind == END:
                self._current = None
                return
            yield payload  # type: ignore[misc]

    async def _next_event(self) -> tuple[int, object] | None:
        while not self._events:
            if self._exhausted:
                return None
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._exhausted = True
                self._decoder.close()
                return None
            self._events.extend(self._decoder.feed(chunk))
        return self._events.popleft()


class FilePart(Protocol):
    """A file to send as one part (a ``DicomFile`` is one): its path and its size when it was read."""

    @property
    def path(self) -> Path: ...

    @property
    def size(self) -> int: ...


# Awaited with the part's index once its bytes are handed to the connection (progress).
OnPartSent = Callable[[int], Awaitable[None]]
_CHUNK = 1024 * 1024


def _file_chunks(part: FilePart, chunk_size: int) -> Iterator[bytes]:
    """Exactly ``part.size`` bytes of the file, in chunks; a file that shrank since is an error."""
    remaining = part.size
    # Reads are one-chunk blocking calls on local files: cheaper inline than a thread hop per chunk.
    try:
        with part.path.open("rb") as stream:
            while remaining > 0:
                chunk = stream.read(min(chunk_size, remaining))
                if not chunk:
                    raise ProtocolError(f"{part.path} shrank while it was being sent; nothing was lost")
                remaining -= len(chunk)
                yield chunk
    except OSError as exc:
        # A file removed or locked after it was collected fails its request, not the whole store.
        raise ProtocolError(
            f"{part.path} could not be read while it was being sent ({exc.strerror or exc})"
        ) from exc


class MultipartFileBody:
    """A multipart/related request body streamed from files, with its length known in advance.

    Iterating it again re-reads the files, so httpx can resend it (auth retry, retry after a 503).
    ``on_part_sent`` is awaited after each part has been handed to the connection.
    """

    def __init__(
        self,
        parts: Sequence[FilePart],
        *,
        media_type: str = "application/dicom",
        chunk_size: int = _CHUNK,
        on_part_sent: OnPartSent | None = None,
    ) -> None:
        self.parts = list(parts)
        self.boundary = f"dicomweb-mcp-{uuid.uuid4().hex}"
        self.content_type = f'multipart/related; type="{media_type}"; boundary={self.boundary}'
        self._chunk_size = chunk_size
        self._on_part_sent = on_part_sent
        self._heads = [
            f"--{self.boundary}\r\nContent-Type: {media_type}\r\nContent-Length: {p.size}\r\n\r\n".encode(
                "latin-1"
            )
            for p in self.parts
        ]
        self._tail = f"--{self.boundary}--\r\n".encode("latin-1")
        self.content_length = sum(
            len(h) + p.size + 2 for h, p in zip(self._heads, self.parts, strict=True)
        ) + len(self._tail)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index, (head, part) in enumerate(zip(self._heads, self.parts, strict=True)):
            yield head
            for chunk in _file_chunks(part, self._chunk_size):
                yield chunk
            yield _CRLF
            if self._on_part_sent is not None:
                await self._on_part_sent(index)
        yield self._tail


class FileBody:
    """One file as a request body (single-part STOW), streamed and iterable again."""

    def __init__(
        self, part: FilePart, *, media_type: str = "application/dicom", on_part_sent: OnPartSent | None = None
    ) -> None:
        self.part = part
        self.content_type = media_type
        self.content_length = part.size
        self._on_part_sent = on_part_sent

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in _file_chunks(self.part, _CHUNK):
            yield chunk
        if self._on_part_sent is not None:
            await self._on_part_sent(0)
