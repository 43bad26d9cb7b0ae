"""The tools themselves: thin adapters from MCP arguments to ``DicomWebOperations`` and back.

Each tool's docstring is its description, its parameters are its input schema (types from
``arguments``), its return annotation its output schema. Every ``DicomWebError`` reaches the agent as a
``ToolError`` that says what went wrong and what to do next.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, ParamSpec, TypeVar, cast

import anyio
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import AcceptedElicitation
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent
from pydantic import BaseModel, Field

from ..dicomweb.models import EXPLICIT_VR_LITTLE_ENDIAN
from ..errors import DicomWebError, InvalidInputError, local_file_error
from ..records import Record as RecordModel
from . import transfer
from .arguments import (
    Deidentify,
    DeleteInstanceUid,
    DeleteSeriesUid,
    Filters,
    FrameTransferSyntax,
    Fuzzy,
    IncludeFields,
    InstanceUid,
    Limit,
    Offset,
    OptionalInstanceUid,
    OptionalSeriesUid,
    OptionalSopClassUid,
    OptionalStudyUid,
    SeriesUid,
    ServerChoice,
    ServerName,
    StudyUid,
    Text,
    TransferSyntax,
)
from .operations import DicomWebOperations
from .rendering import DEFAULT_SIZE
from .results import (
    ChangeFeedResult,
    DeleteResult,
    ReadReportResult,
    RetrieveFramesResult,
    RetrieveInstancesResult,
    RetrieveMetadataResult,
    RetrieveRenderedResult,
    SearchInstancesResult,
    SearchSeriesResult,
    SearchStudiesResult,
    ServerInfo,
    StoreInstancesResult,
    StudyOverviewResult,
    TransferResult,
)
from .search import SearchPage

__all__ = ["AppState"]


@dataclass(frozen=True)
class AppState:
    servers: Mapping[str, DicomWebOperations]  # by name, the default first

    def operations(self, server: str | None) -> DicomWebOperations:
        """The named server's operations (the first server's when none is named)."""
        if server is None:
            return next(iter(self.servers.values()))
        found = self.servers.get(server)
        if found is None:
            raise InvalidInputError(
                f"There is no server named {server!r}: the servers are {', '.join(self.servers)}."
            )
        return found


def _operations(ctx: Context[Any, Any], server: str | None) -> DicomWebOperations:
    return cast(AppState, ctx.request_context.lifespan_context).operations(server)


P = ParamSpec("P")
R = TypeVar("R")


def _tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn the package's errors into ToolErrors whose text the agent sees (other exceptions are hidden)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except DicomWebError as exc:
            raise ToolError(str(exc)) from exc
        except OSError as exc:
            raise ToolError(str(local_file_error(exc))) from exc

    return wrapper


@_tool_errors
async def search_studies(
    ctx: Context[Any, Any],
    patient_name: Annotated[Text, Field(description="Patient name; * ? wildcards, e.g. Smith*.")] = None,
    patient_id: Annotated[Text, Field(description="Patient ID (MRN).")] = None,
    study_date: Annotated[
        Text, Field(description="YYYYMMDD, or a range 20200101-20201231 (ends optional).")
    ] = None,
    accession_number: Text = None,
    modality: Annotated[Text, Field(description="A modality in the study: CT, MR, ...")] = None,
    study_description: Annotated[Text, Field(description="Wildcards allowed.")] = None,
    referring_physician_name: Text = None,
    study_uid: OptionalStudyUid = None,
    filters: Filters = None,
    include_fields: IncludeFields = None,
    fuzzy: Fuzzy = False,
    limit: Limit = 25,
    offset: Offset = 0,
    server: ServerName = None,
) -> SearchStudiesResult:
    """Find studies (QIDO-RS); returns a summary per study."""
    return await _operations(ctx, server).search_studies(
        SearchPage.of(filters, include_fields, fuzzy, limit, offset),
        patient_name=patient_name,
        patient_id=patient_id,
        study_date=study_date,
        accession_number=accession_number,
        modality=modality,
        study_description=study_description,
        referring_physician_name=referring_physician_name,
        study_uid=study_uid,
    )


@_tool_errors
async def search_series(
    ctx: Context[Any, Any],
    study_uid: Annotated[OptionalStudyUid, Field(description="Within this study.")] = None,
    series_uid: OptionalSeriesUid = None,
    modality: Annotated[Text, Field(description="CT, MR, ...")] = None,
    series_description: Annotated[Text, Field(description="Wildcards allowed.")] = None,
    filters: Filters = None,
    include_fields: IncludeFields = None,
    limit: Limit = 25,
    offset: Offset = 0,
    server: ServerName = None,
) -> SearchSeriesResult:
    """Find series (QIDO-RS), usually of one study; returns a summary per series."""
    return await _operations(ctx, server).search_series(
        SearchPage.of(filters, include_fields, False, limit, offset),
        study_uid=study_uid,
        series_uid=series_uid,
        modality=modality,
        series_description=series_description,
    )


@_tool_errors
async def search_instances(
    ctx: Context[Any, Any],
    study_uid: Annotated[OptionalStudyUid, Field(description="Within this study.")] = None,
    series_uid: Annotated[
        OptionalSeriesUid, Field(description="Search within this series (needs study_uid).")
    ] = None,
    instance_uid: OptionalInstanceUid = None,
    sop_class_uid: OptionalSopClassUid = None,
    filters: Filters = None,
    include_fields: IncludeFields = None,
    limit: Limit = 25,
    offset: Offset = 0,
    server: ServerName = None,
) -> SearchInstancesResult:
    """Find instances (QIDO-RS) of a study or series; returns a summary per instance."""
    return await _operations(ctx, server).search_instances(
        SearchPage.of(filters, include_fields, False, limit, offset),
        study_uid=study_uid,
        series_uid=series_uid,
        instance_uid=instance_uid,
        sop_class_uid=sop_class_uid,
    )


@_tool_errors
async def retrieve_instances(
    ctx: Context[Any, Any],
    study_uid: StudyUid,
    series_uid: Annotated[OptionalSeriesUid, Field(description="Only this series.")] = None,
    instance_uid: Annotated[
        OptionalInstanceUid, Field(description="Only this instance (needs series_uid).")
    ] = None,
    transfer_syntax: Annotated[
        TransferSyntax, Field(description="Transfer syntax UID; * = as stored.")
    ] = "*",
    output_dir: Annotated[Text, Field(description="Subdirectory of the download directory.")] = None,
    deidentify: Deidentify = False,
    server: ServerName = None,
) -> RetrieveInstancesResult:
    """Download a study, series or instance (WADO-RS) as DICOM files; returns where they are."""
    return await _operations(ctx, server).retrieve_instances(
        study_uid=study_uid,
        series_uid=series_uid,
        instance_uid=instance_uid,
        transfer_syntax=transfer_syntax,
        output_dir=output_dir,
        deidentify=deidentify,
        progress=ctx.report_progress,
    )


@_tool_errors
async def retrieve_metadata(
    ctx: Context[Any, Any],
    study_uid: StudyUid,
    series_uid: OptionalSeriesUid = None,
    instance_uid: OptionalInstanceUid = None,
    server: ServerName = None,
) -> RetrieveMetadataResult:
    """Read the metadata of a study, series or instance (WADO-RS): a summary per instance; the full DICOM
    JSON is saved to metadata_file."""
    return await _operations(ctx, server).retrieve_metadata(
        study_uid=study_uid, series_uid=series_uid, instance_uid=instance_uid
    )


@_tool_errors
async def retrieve_frames(
    ctx: Context[Any, Any],
    study_uid: StudyUid,
    series_uid: SeriesUid,
    instance_uid: InstanceUid,
    frames: Annotated[
        list[Annotated[int, Field(ge=1)]],
        Field(min_length=1, max_length=10000, description="Frame numbers from 1, e.g. [1, 2]."),
    ],
    transfer_syntax: Annotated[
        FrameTransferSyntax, Field(description="Transfer syntax UID (default uncompressed); * = as stored.")
    ] = EXPLICIT_VR_LITTLE_ENDIAN,
    server: ServerName = None,
) -> RetrieveFramesResult:
    """Download pixel data frames of one instance (WADO-RS) to files."""
    return await _operations(ctx, server).retrieve_frames(
        study_uid=study_uid,
        series_uid=series_uid,
        instance_uid=instance_uid,
        frames=frames,
        transfer_syntax=transfer_syntax,
    )


def _with_picture(result: RecordModel, picture: bytes | None, mime_type: str) -> CallToolResult:
    """The result as text and structured content, and the picture as image content when there is one."""
    content: list[ContentBlock] = [TextContent(type="text", text=result.model_dump_json())]
    if picture is not None:
        data = base64.b64encode(picture).decode("ascii")
        content.append(ImageContent(type="image", data=data, mime_type=mime_type))
    return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))


@_tool_errors
async def retrieve_rendered(
    ctx: Context[Any, Any],
    study_uid: StudyUid,
    series_uid: SeriesUid,
    instance_uid: InstanceUid,
    frame: Annotated[int | None, Field(ge=1, description="Frame number, from 1.")] = None,
    size: Annotated[int, Field(ge=16, le=4096, description="Longest edge, pixels.")] = DEFAULT_SIZE,
    window: Annotated[
        Text,
        Field(description="lung, mediastinum, bone, brain, abdomen or center,width; default: the image's."),
    ] = None,
    media_type: Literal["image/jpeg", "image/png"] = "image/jpeg",
    quality: Annotated[int | None, Field(ge=1, le=100, description="JPEG quality.")] = None,
    show: Annotated[bool, Field(description="Also return the picture, to look at.")] = False,
    server: ServerName = None,
) -> Annotated[CallToolResult, RetrieveRenderedResult]:
    """Render an instance or frame as JPEG or PNG, sized and windowed, to a file."""
    result = await _operations(ctx, server).retrieve_rendered(
        study_uid=study_uid,
        series_uid=series_uid,
        instance_uid=instance_uid,
        frame=frame,
        size=size,
        window=window,
        media_type=media_type,
        quality=quality,
    )
    picture = await anyio.Path(result.path).read_bytes() if show else None
    return _with_picture(result, picture, result.content_type)


@_tool_errors
async def get_study_overview(
    ctx: Context[Any, Any],
    study_uid: StudyUid,
    show: Annotated[bool, Field(description="Also return a contact sheet, a thumbnail a series.")] = False,
    server: ServerName = None,
) -> Annotated[CallToolResult, StudyOverviewResult]:
    """What a study holds: patient, study, every series, its reports; start here."""
    result = await _operations(ctx, server).get_study_overview(study_uid=study_uid, show=show)
    sheet = await anyio.Path(result.contact_sheet).read_bytes() if result.contact_sheet else None
    return _with_picture(result, sheet, "image/jpeg")


@_tool_errors
async def read_report(
    ctx: Context[Any, Any],
    study_uid: StudyUid,
    series_uid: SeriesUid,
    instance_uid: InstanceUid,
    server: ServerName = None,
) -> ReadReportResult:
    """Read a report (Structured Report or PDF) as text."""
    return await _operations(ctx, server).read_report(
        study_uid=study_uid, series_uid=series_uid, instance_uid=instance_uid
    )


@_tool_errors
async def store_instances(
    ctx: Context[Any, Any],
    paths: Annotated[list[str], Field(min_length=1, description="DICOM files or directories (recursive).")],
    study_uid: Annotated[OptionalStudyUid, Field(description="Refuse files of other studies.")] = None,
    encoding: Annotated[
        Literal["multipart", "single-part"], Field(description="single-part: Azure only, a file a request.")
    ] = "multipart",
    server: ServerName = None,
) -> StoreInstancesResult:
    """Upload DICOM files (STOW-RS); reports each file's outcome."""
    return await _operations(ctx, server).store_instances(
        paths=paths, study_uid=study_uid, encoding=encoding, progress=ctx.report_progress
    )


@_tool_errors
async def transfer_instances(
    ctx: Context[Any, Any],
    source: ServerChoice,
    destination: ServerChoice,
    study_uid: StudyUid,
    series_uid: Annotated[OptionalSeriesUid, Field(description="Only this series.")] = None,
    instance_uid: OptionalInstanceUid = None,
    deidentify: Deidentify = False,
) -> TransferResult:
    """Copy a study, series or instance from one server to another; reports each instance's outcome."""
    state = cast(AppState, ctx.request_context.lifespan_context)
    return await transfer.transfer_instances(
        state.operations(source),
        state.operations(destination),
        study_uid=study_uid,
        series_uid=series_uid,
        instance_uid=instance_uid,
        deidentify=deidentify,
        progress=ctx.report_progress,
    )


class DeleteConfirmation(BaseModel):
    confirm: bool = Field(description="Delete permanently? This cannot be undone.")


async def confirm_delete(
    ctx: Context[Any, Any],
    study_uid: str,
    series_uid: str | None,
    instance_uid: str | None,
    server: str | None = None,
) -> Elicit[DeleteConfirmation] | DeleteConfirmation:
    """Ask the user before deleting, where the client can ask; otherwise the operator's setting decides.
    A server the operator did not open to deletion is refused before anyone is asked."""
    try:
        config = _operations(ctx, server).config
    except DicomWebError as exc:
        raise ToolError(str(exc)) from exc
    if not config.delete_enabled:
        raise ToolError(
            f"Deletion is switched off for server {config.name!r}: the operator allows it with "
            "allow_delete = true (and read_only = false) for that server."
        )
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.elicitation is None:
        return DeleteConfirmation(confirm=True)
    what = (
        f"instance {instance_uid}"
        if instance_uid
        else f"series {series_uid}"
        if series_uid
        else f"study {study_uid}"
    )
    return Elicit(
        f"Permanently delete {what} (study {study_uid}) from {config.base_url}?", DeleteConfirmation
    )


@_tool_errors
async def delete_instances(
    ctx: Context[Any, Any],
    study_uid: StudyUid,
    confirmation: Annotated[ElicitationResult[DeleteConfirmation], Resolve(confirm_delete)],
    series_uid: DeleteSeriesUid = None,
    instance_uid: DeleteInstanceUid = None,
    server: ServerName = None,
) -> DeleteResult:
    """Permanently delete a study, series or instance from the archive."""
    if not isinstance(confirmation, AcceptedElicitation) or not confirmation.data.confirm:
        raise ToolError("The user did not confirm the deletion; nothing was deleted.")
    return await _operations(ctx, server).delete_instances(
        study_uid=study_uid, series_uid=series_uid, instance_uid=instance_uid
    )


@_tool_errors
async def get_change_feed(
    ctx: Context[Any, Any],
    offset: Annotated[int, Field(ge=0, description="The last result's next_offset.")] = 0,
    limit: Annotated[int | None, Field(ge=1, le=200, description="Entries (v1 at most 100).")] = None,
    include_metadata: Annotated[bool, Field(description="Save the entries' metadata to a file.")] = False,
    start_time: Annotated[Text, Field(description="v2: from this ISO 8601 time, with timezone.")] = None,
    end_time: Annotated[Text, Field(description="v2: before this ISO 8601 time.")] = None,
    latest: Annotated[bool, Field(description="Only the newest entry.")] = False,
    server: ServerName = None,
) -> ChangeFeedResult:
    """What changed in the archive, in order: creations, updates, deletions."""
    return await _operations(ctx, server).get_change_feed(
        offset=offset,
        limit=limit,
        include_metadata=include_metadata,
        start_time=start_time,
        end_time=end_time,
        latest=latest,
    )


@_tool_errors
async def server_info(
    ctx: Context[Any, Any],
    probe: Annotated[bool, Field(description="false: settings only, no request.")] = True,
    server: ServerName = None,
) -> ServerInfo:
    """Servers: kind, reachability, capabilities; and the download directory."""
    state = cast(AppState, ctx.request_context.lifespan_context)
    chosen = state.operations(server)
    others = [ops for ops in state.servers.values() if ops is not chosen]
    return await chosen.server_info(probe=probe, others=others)
