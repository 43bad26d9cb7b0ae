"""One instance fetched to a temporary file under the download directory, read, then removed.

The local renderer and the report reader need the whole Part 10 file; a temporary file keeps memory to
what pydicom reads from it (one frame), whatever the instance's size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ..dicom.reference import Reference
from ..dicomweb.client import DicomWebClient
from ..errors import ProtocolError
from ..files.store import FileStore

__all__ = ["instance_file"]


@asynccontextmanager
async def instance_file(
    client: DicomWebClient, store: FileStore, instance: Reference, *, transfer_syntax: str = "*"
) -> AsyncIterator[Path]:
    """WADO-RS retrieve of one instance into a hidden file that is removed when the block ends."""
    path: Path | None = None
    try:
        async with client.stream_instances(instance, transfer_syntax=transfer_syntax) as reader:
            async for part in reader:
                path = await store.save_temporary(part.aiter_bytes())
                break
        if path is None:
            raise ProtocolError(
                f"The server answered the retrieve of instance {instance.instance_uid} with no file."
            )
        yield path
    finally:
        if path is not None:
            path.unlink(missing_ok=True)
