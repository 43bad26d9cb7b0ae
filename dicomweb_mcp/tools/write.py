"""The tools that change an archive or watch it change: store, transfer, delete, the change feed, and
what each configured server is."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import AcceptedElicitation
from pydantic import BaseModel, Field

from ..dicom.reference import Reference
from ..dicomweb.models import DeleteResult, StoreOutcome, StoreStatus
from ..dicomweb.stow import group_by_status
from ..errors import DicomWebError, InvalidInputError
from ..files.dicomfiles import DicomFile, collect_dicom_files
from .arguments import (
    Deidentify,
    DeleteInstanceUid,
    DeleteSeriesUid,
    OptionalInstanceUid,
    OptionalSeriesUid,
    OptionalStudyUid,
    ServerChoice,
    ServerName,
    StudyUid,
    Text,
)
from .context import App, Archive, Reporter, ToolContext
from .deidentification import Deidentification
from .results import (
    MAX_LISTED_FILES,
    MAX_LISTED_PROBLEMS,
    ChangeFeedResult,
    FileProblem,
    ServerCapabilities,
    ServerInfo,
    StoreCounts,
    StoreInstancesResult,
    TransferResult,
)
from .transfer import Transfer

__all__ = [
    "delete_instances",
    "get_change_feed",
    "server_info",
    "store_instances",
    "transfer_instances",
]


async def store_instances(
    app: App,
    progress: Reporter,
    paths: Annotated[list[str], Field(min_length=1, description="DICOM files or directories (recursive).")],
    study_uid: Annotated[OptionalStudyUid, Field(description="Refuse files of other studies.")] = None,
    encoding: Annotated[
        Literal["multipart", "single-part"], Field(description="single-part: Azure only, a file a request.")
    ] = "multipart",
    server: ServerName = None,
) -> StoreInstancesResult:
    """Upload DICOM files (STOW-RS); reports each file's outcome."""
    archive = app.archive(server, "store")
    study = Reference.scope(study_uid)
    if not paths:
        raise InvalidInputError("paths is empty: give at least one DICOM file or directory.")
    files, skipped = await anyio.to_thread.run_sync(collect_dicom_files, paths, app.config.upload_roots)
    outcomes: list[StoreOutcome] = []
    sent: set[Path] = set()  # a retried request sends files again: count each once
    sent_bytes = 0
    total_bytes = sum(f.size for f in files)

    async def report() -> None:
        # Progress must increase with every report: count each file once when sent, once when answered.
        await progress(
            len(sent) + len(outcomes),
            2 * len(files),
            f"sent {len(sent)}/{len(files)} instances "
            f"({sent_bytes / 1e6:.1f}/{total_bytes / 1e6:.1f} MB); {len(outcomes)} answered",
        )

    async def on_sent(file: DicomFile) -> None:
        nonlocal sent_bytes
        if file.path not in sent:
            sent.add(file.path)
            sent_bytes += file.size
            await report()

    async def on_batch(batch: Sequence[StoreOutcome]) -> None:
        outcomes.extend(batch)
        await report()

    if files:
        await archive.client.store_instances(
            files, study=study, encoding=encoding, on_batch=on_batch, on_sent=on_sent
        )
    by_status = group_by_status(outcomes)
    warnings = [f"{o.file.path.name}: {w}" for o in outcomes for w in o.warnings]
    if not files:
        warnings.append("No DICOM files were found in the given paths; nothing was sent.")
    stored, present = by_status[StoreStatus.STORED], by_status[StoreStatus.ALREADY_PRESENT]
    failed = by_status[StoreStatus.FAILED]
    return StoreInstancesResult(
        counts=StoreCounts(
            stored=len(stored), already_present=len(present), failed=len(failed), skipped=len(skipped)
        ),
        study_uids=sorted({o.file.study_uid for o in stored + present}),
        stored=[str(o.file.path) for o in stored[:MAX_LISTED_FILES]],
        already_present=[str(o.file.path) for o in present[:MAX_LISTED_FILES]],
        failed=[
            FileProblem(path=str(o.file.path), reason=o.reason or "refused", reason_code=o.reason_code)
            for o in failed[:MAX_LISTED_PROBLEMS]
        ],
        skipped=[FileProblem(path=str(f.path), reason=f.reason) for f in skipped[:MAX_LISTED_PROBLEMS]],
        warnings=warnings[:MAX_LISTED_PROBLEMS],
    )


async def transfer_instances(
    app: App,
    progress: Reporter,
    source: ServerChoice,
    destination: ServerChoice,
    study_uid: StudyUid,
    series_uid: Annotated[OptionalSeriesUid, Field(description="Only this series.")] = None,
    instance_uid: OptionalInstanceUid = None,
    deidentify: Deidentify = False,
) -> TransferResult:
    """Copy a study, series or instance from one server to another; reports each instance's outcome."""
    reference = Reference(study_uid, series_uid, instance_uid)
    origin, target = app.archive(source), app.archive(destination, "store")
    if origin is target and not deidentify:
        raise InvalidInputError(
            f"source and destination are both {origin.name!r}: a transfer there would copy every "
            "instance onto itself. Name another destination, or set deidentify=true for a de-identified "
            "copy."
        )
    deidentification = Deidentification(app.config) if deidentify else None
    transfer = Transfer(origin, target, app.store, progress, origin.config.concurrency, deidentification)
    return await transfer.run(reference)


class DeleteConfirmation(BaseModel):
    confirm: bool = Field(description="Delete permanently? This cannot be undone.")


async def confirm_delete(
    ctx: Context[ToolContext, Any],
    study_uid: str,
    series_uid: str | None,
    instance_uid: str | None,
    server: str | None = None,
) -> Elicit[DeleteConfirmation] | DeleteConfirmation:
    """Ask the user before deleting, where the client can ask; otherwise the operator's setting decides.
    A server the operator did not open to deletion, or a bad reference, is refused before anyone is asked."""
    try:
        archive = ctx.request_context.lifespan_context.archive(server, "delete")
        what = Reference(study_uid, series_uid, instance_uid)
    except DicomWebError as exc:
        raise ToolError(str(exc)) from exc
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.elicitation is None:
        return DeleteConfirmation(confirm=True)
    return Elicit(
        f"Permanently delete {what} (study {study_uid}) from {archive.config.base_url}?", DeleteConfirmation
    )


async def delete_instances(
    app: App,
    study_uid: StudyUid,
    confirmation: Annotated[ElicitationResult[DeleteConfirmation], Resolve(confirm_delete)],
    series_uid: DeleteSeriesUid = None,
    instance_uid: DeleteInstanceUid = None,
    server: ServerName = None,
) -> DeleteResult:
    """Permanently delete a study, series or instance from the archive."""
    if not isinstance(confirmation, AcceptedElicitation) or not confirmation.data.confirm:
        raise ToolError("The user did not confirm the deletion; nothing was deleted.")
    archive = app.archive(server, "delete")
    return await archive.client.delete(Reference(study_uid, series_uid, instance_uid))


async def get_change_feed(
    app: App,
    offset: Annotated[int, Field(ge=0, description="The last result's next_offset.")] = 0,
    limit: Annotated[int | None, Field(ge=1, le=200, description="Entries (v1 at most 100).")] = None,
    include_metadata: Annotated[bool, Field(description="Save the entries' metadata to a file.")] = False,
    start_time: Annotated[Text, Field(description="v2: from this ISO 8601 time, with timezone.")] = None,
    end_time: Annotated[Text, Field(description="v2: before this ISO 8601 time.")] = None,
    latest: Annotated[bool, Field(description="Only the newest entry.")] = False,
    server: ServerName = None,
) -> ChangeFeedResult:
    """What changed in the archive, in order: creations, updates, deletions."""
    client = app.archive(server).client
    if latest:
        entry = await client.change_feed_latest(include_metadata=include_metadata)
        entries = [entry] if entry is not None else []
    else:
        entries = await client.change_feed(
            offset=offset,
            limit=limit,
            include_metadata=include_metadata,
            start_time=start_time,
            end_time=end_time,
        )
    metadata_file = None
    with_metadata = [e for e in entries if e.metadata]
    if include_metadata and with_metadata:
        first, last = entries[0].sequence, entries[-1].sequence
        path = app.store.directory() / "changefeed" / f"metadata-{first}-{last}.json"
        data = {str(e.sequence): e.metadata for e in with_metadata}
        await anyio.to_thread.run_sync(app.store.write_json, path, data)
        metadata_file = str(path)
    if latest or not entries:
        next_offset = None if latest else offset
    elif client.change_feed_version >= 2:
        next_offset = offset + len(entries)  # v2: the offset counts entries (within the time window)
    else:
        next_offset = max(e.sequence for e in entries)  # v1: the offset is the last sequence seen
    return ChangeFeedResult(entries=entries, next_offset=next_offset, metadata_file=metadata_file)


async def server_info(
    app: App,
    probe: Annotated[bool, Field(description="false: settings only, no request.")] = True,
    server: ServerName = None,
) -> ServerInfo:
    """Servers: kind, reachability, capabilities; and the download directory."""
    chosen = app.archive(server)
    archives = [chosen, *(a for a in app.archives.values() if a is not chosen)]
    infos: list[ServerInfo | None] = [None] * len(archives)

    async def describe(index: int) -> None:
        infos[index] = await _describe(archives[index], probe, app.config.download_dir)

    # The others are probed at the same time: a slow one does not add to the first one's time.
    async with anyio.create_task_group() as group:
        for index in range(len(archives)):
            group.start_soon(describe, index)
    first, *rest = (info for info in infos if info is not None)
    return first.model_copy(update={"servers": rest or None})


async def _describe(archive: Archive, probe: bool, download_dir: Path) -> ServerInfo:
    error = None
    reachable: bool | None = None  # not asked
    profile = archive.client.assumed_profile()
    if probe:
        try:
            profile = await archive.client.profile()
            await archive.client.search_studies(limit=1)
            reachable = True
        except DicomWebError as exc:
            reachable, error = False, str(exc)
    config = archive.config
    return ServerInfo(
        name=config.name,
        base_url=config.base_url,
        server_kind=profile.kind.value,
        auth=config.auth.value,
        reachable=reachable,
        error=error,
        # Only a server that answered has capabilities to speak of.
        capabilities=ServerCapabilities(
            delete=profile.delete_method != "unsupported",
            change_feed=profile.change_feed != "none",
            rendered=profile.rendered,
            single_part_store=profile.single_part_store,
        )
        if reachable
        else None,
        download_dir=str(download_dir),
        read_only=config.read_only,
        delete_enabled=config.delete_enabled,
    )
