"""The retrieve tools: instances, metadata and frames saved under the download directory, and a result
that says where they are."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
from pydantic import Field

from ..dicom.reference import Reference
from ..dicomweb.models import EXPLICIT_VR_LITTLE_ENDIAN
from ..errors import ProtocolError
from ..files.store import SavedFrame
from .arguments import (
    Deidentify,
    FrameTransferSyntax,
    InstanceUid,
    OptionalInstanceUid,
    OptionalSeriesUid,
    SeriesUid,
    ServerName,
    StudyUid,
    Text,
    TransferSyntax,
)
from .context import App, Reporter
from .deidentification import Deidentification
from .download import download_as_saved
from .results import (
    MAX_LISTED_FILES,
    InstanceMetadata,
    RetrieveFramesResult,
    RetrieveInstancesResult,
    RetrieveMetadataResult,
)
from .summary import summarize

__all__ = ["retrieve_frames", "retrieve_instances", "retrieve_metadata"]


async def retrieve_instances(
    app: App,
    progress: Reporter,
    study_uid: StudyUid,
    series_uid: Annotated[OptionalSeriesUid, Field(description="Only this series.")] = None,
    instance_uid: Annotated[
        OptionalInstanceUid, Field(description="Only this instance (needs series_uid).")
    ] = None,
    transfer_syntax: Annotated[
        TransferSyntax, Field(description="Transfer syntax UID; * = as stored.")
    ] = "*",
    output_dir: Annotated[Text, Field(description="Under the download directory.")] = None,
    deidentify: Deidentify = False,
    server: ServerName = None,
) -> RetrieveInstancesResult:
    """Download a study, series or instance (WADO-RS) as DICOM files; returns where they are."""
    reference = Reference(study_uid, series_uid, instance_uid)
    archive = app.archive(server)
    directory = app.store.directory(output_dir)
    deidentification = Deidentification(app.config) if deidentify else None
    download = await download_as_saved(
        archive, app.store, reference, directory, deidentification, progress, transfer_syntax=transfer_syntax
    )
    study_directory = Reference(download.saved_study_uid or study_uid).file(directory)
    return RetrieveInstancesResult(
        directory=str(study_directory),
        file_count=len(download.saved),
        total_bytes=download.saved_bytes,
        files=[str(f.path.relative_to(study_directory)) for f in download.saved[:MAX_LISTED_FILES]],
        manifest=str(download.manifest),
        warnings=deidentification.summary() or None if deidentification is not None else None,
    )


async def retrieve_metadata(
    app: App,
    study_uid: StudyUid,
    series_uid: OptionalSeriesUid = None,
    instance_uid: OptionalInstanceUid = None,
    server: ServerName = None,
) -> RetrieveMetadataResult:
    """Metadata of a study, series or instance (WADO-RS): a summary per instance, all of it in a file."""
    reference = Reference(study_uid, series_uid, instance_uid)
    datasets = await app.archive(server).client.retrieve_metadata(reference)
    path = reference.level_file(app.store.directory(), "metadata")
    await anyio.to_thread.run_sync(app.store.write_json, path, datasets)
    summaries = [summarize(d, InstanceMetadata) for d in datasets]
    summaries = [s for s in summaries if InstanceMetadata.key in s]
    summaries.sort(
        key=lambda s: (s.get("series_number") or 0, s.get("series_uid", ""), s.get("instance_number") or 0)
    )
    return RetrieveMetadataResult(
        instances=[InstanceMetadata(**s) for s in summaries[:MAX_LISTED_FILES]],
        instance_count=len(summaries),
        metadata_file=str(path),
    )


async def retrieve_frames(
    app: App,
    study_uid: StudyUid,
    series_uid: SeriesUid,
    instance_uid: InstanceUid,
    frames: Annotated[
        list[Annotated[int, Field(ge=1)]],
        Field(min_length=1, max_length=10000, description="Frame numbers from 1, e.g. [1, 2]."),
    ],
    transfer_syntax: Annotated[
        FrameTransferSyntax, Field(description="Default uncompressed; * = as stored.")
    ] = EXPLICIT_VR_LITTLE_ENDIAN,
    server: ServerName = None,
) -> RetrieveFramesResult:
    """Download pixel data frames of one instance (WADO-RS) to files."""
    instance = Reference(study_uid, series_uid, instance_uid)
    base = instance.file(app.store.directory())
    saved: list[SavedFrame] = []
    client = app.archive(server).client
    async with client.stream_frames(instance, frames, transfer_syntax=transfer_syntax) as reader:
        async for part in reader:
            if len(saved) >= len(frames):
                raise ProtocolError(f"The server sent more frames than the {len(frames)} asked for.")
            number = part.frame_number or frames[len(saved)]
            saved.append(
                await app.store.save_frame(
                    part.aiter_bytes(), base, number, part.media_type, part.transfer_syntax_uid
                )
            )
    if len(saved) != len(frames):
        raise ProtocolError(f"The server sent {len(saved)} frames for the {len(frames)} asked for.")
    return RetrieveFramesResult(
        directory=str(base.parent),
        frame_count=len(saved),
        total_bytes=sum(f.size_bytes for f in saved),
        files=[Path(f.path).name for f in saved[:MAX_LISTED_FILES]],
        content_type=saved[0].content_type,
        transfer_syntax_uid=saved[0].transfer_syntax_uid,
    )
