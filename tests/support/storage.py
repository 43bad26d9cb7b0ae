"""Saving a WADO-RS stream with the file store, the way the retrieve tool does, for lower-level tests."""

from __future__ import annotations

from pathlib import Path

from dicomweb_mcp import DicomFile, FileStore, MultipartReader


async def save_all(store: FileStore, reader: MultipartReader, directory: Path) -> list[DicomFile]:
    return [await store.save_instance(part.aiter_bytes(), directory) async for part in reader]
