"""The file store: where retrieved instances, frames and metadata are saved, and how.

Every file is written to a temporary name and renamed only when complete and checked, so a file with
its final name is always whole. Names are built from validated UIDs only, under the download directory.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..dicom.part10 import HEAD_BYTES
from ..errors import InvalidInputError, NotDicomError, local_file_error
from ..records import Record
from .dicomfiles import DicomFile, read_dicom_file

__all__ = ["FileStore", "SavedFrame"]

_FRAME_EXTENSIONS = {
    "application/octet-stream": ".raw",
    "image/jpeg": ".jpg",
    "image/jp2": ".jp2",
    "image/jpx": ".jpx",
    "image/jls": ".jls",
    "image/dicom-rle": ".rle",
    "image/png": ".png",
}


class SavedFrame(Record):
    frame: int
    path: str
    content_type: str
    transfer_syntax_uid: str | None = None
    size_bytes: int


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    def directory(self, output_dir: str | None = None) -> Path:
        """The directory to save into: the root, or ``output_dir`` which must resolve inside the root."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise local_file_error(exc) from None
        root = self.root.resolve()
        if not output_dir:
            return root
        candidate = Path(output_dir).expanduser()
        if not candidate.is_absolute():
            candidate = root / candidate
        resolved = candidate.resolve()  # follows symlinks: a link pointing out is refused too
        if not resolved.is_relative_to(root):
            raise InvalidInputError(
                f"output_dir {output_dir!r} is outside the download directory {root}: give a path inside it "
                "(relative paths are taken from it), or leave output_dir empty."
            )
        return resolved

    def _temporary(self, directory: Path) -> Path:
        self._ensure_dir(directory)
        return directory / f".incoming-{uuid.uuid4().hex}.partial"

    def _ensure_dir(self, directory: Path) -> None:
        """Create ``directory`` only if it really lies inside the download directory.

        Names are built from validated UIDs, but a symlink planted inside the download directory could
        still lead out of it: the nearest existing ancestor is resolved and checked before anything is
        created, so not even an empty directory appears outside.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        existing = directory
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.resolve().is_relative_to(self.root.resolve()):
            raise InvalidInputError(
                f"Refusing to write to {directory}: it resolves outside the download directory {self.root} "
                "(a symbolic link?). Remove the link or choose another DICOMWEB_DOWNLOAD_DIR."
            )
        directory.mkdir(parents=True, exist_ok=True)

    async def _write(self, chunks: AsyncIterable[bytes | memoryview], target: Path) -> tuple[int, bytes]:
        """Write ``chunks`` to ``target``; return the size and the first bytes (for the header).

        Chunks are written inline: a write of one network chunk into the page cache costs microseconds.
        A writer thread overlapping disk and network was measured and lost to writing inline. On any
        failure or cancellation the file is removed and the error re-raised.
        """
        size = 0
        head = bytearray()
        try:
            with target.open("wb") as stream:
                async for chunk in chunks:
                    if len(head) < HEAD_BYTES:
                        head += chunk[: HEAD_BYTES - len(head)]
                    stream.write(chunk)
                    size += len(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return size, bytes(head)

    async def save_instance(
        self, chunks: AsyncIterable[bytes | memoryview], directory: Path, study_uid: str | None = None
    ) -> DicomFile:
        """Save one DICOM file as ``{directory}/{study}/{series}/{instance}.dcm``, named from its own UIDs.

        Raises ``NotDicomError`` (and keeps nothing) when the bytes are not a usable DICOM file, or not one
        of ``study_uid`` when that is given.
        """
        temporary = self._temporary(directory)
        size, head = await self._write(chunks, temporary)
        try:
            info = read_dicom_file(temporary, head)
            if not isinstance(info, DicomFile):
                raise NotDicomError(info.reason)
            if study_uid is not None and info.study_uid != study_uid:
                raise NotDicomError(f"it belongs to study {info.study_uid}, not {study_uid}")
            final = info.reference.file(directory, ".dcm")
            self._ensure_dir(final.parent)
            os.replace(temporary, final)
        except BaseException:
            # Whatever went wrong (not DICOM, a file where a directory should be), no partial file is left.
            temporary.unlink(missing_ok=True)
            raise
        return replace(info, path=final, size=size)

    async def save_frame(
        self,
        chunks: AsyncIterable[bytes | memoryview],
        instance_base: Path,
        number: int,
        content_type: str,
        transfer_syntax_uid: str | None = None,
    ) -> SavedFrame:
        """Save a frame beside its instance: ``{instance}.frame-{N}{.raw|.jpg|...}``; ``instance_base``
        is the instance's ``Reference.file``."""
        extension = _FRAME_EXTENSIONS.get(content_type, ".bin")
        final = instance_base.parent / f"{instance_base.name}.frame-{number}{extension}"
        temporary = self._temporary(instance_base.parent)  # checks the directory is inside the root
        size, _ = await self._write(chunks, temporary)
        os.replace(temporary, final)
        return SavedFrame(
            frame=number,
            path=str(final),
            content_type=content_type,
            transfer_syntax_uid=transfer_syntax_uid,
            size_bytes=size,
        )

    async def save_temporary(self, chunks: AsyncIterable[bytes | memoryview]) -> Path:
        """Write ``chunks`` to a hidden temporary file in the download directory (an instance to read
        once, such as one to render) and return its path: the caller removes it."""
        temporary = self._temporary(self.directory())
        await self._write(chunks, temporary)
        return temporary

    def write_json(self, path: Path, data: Any) -> Path:
        """Write JSON atomically (temporary name, then rename)."""
        return self.write_bytes(path, json.dumps(data, indent=1).encode("utf-8"))

    def write_bytes(self, path: Path, content: bytes) -> Path:
        """Write a small file atomically (temporary name, then rename)."""
        temporary = self._temporary(path.parent)
        try:
            temporary.write_bytes(content)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return path
