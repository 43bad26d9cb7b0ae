"""The tools that look and read: one image rendered, a study's overview with its contact sheet, a report
as text. A picture goes back as image content only when the agent asks to see it (``show``)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Literal

import anyio
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent
from pydantic import Field

from ..dicom.dicomjson import element_value
from ..dicom.reference import Reference
from ..dicom.reports import Report, not_a_report, report_of
from ..dicom.sopclass import report_kind
from ..dicomweb.query import build_query
from ..errors import InvalidInputError, ProtocolError
from ..records import Record
from .arguments import InstanceUid, SeriesUid, ServerName, StudyUid, Text
from .context import App
from .fetch import instance_file
from .overview import study_overview
from .rendering import DEFAULT_SIZE, render
from .results import MAX_REPORT_TEXT, ReadReportResult, RetrieveRenderedResult, StudyOverviewResult

__all__ = ["cut_text", "get_study_overview", "read_report", "retrieve_rendered", "with_picture"]


async def retrieve_rendered(
    app: App,
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
    instance = Reference(study_uid, series_uid, instance_uid)
    client = app.archive(server).client
    rendered = await render(
        client,
        app.store,
        instance,
        frame=frame,
        size=size,
        window=window,
        media_type=media_type,
        quality=quality,
    )
    content = await anyio.to_thread.run_sync(rendered.encoded, media_type, quality)
    extension = ".png" if media_type == "image/png" else ".jpg"
    path = instance.file(
        app.store.directory(), ".rendered" + (f"-frame-{frame}" if frame else "") + extension
    )
    await anyio.to_thread.run_sync(app.store.write_bytes, path, content)
    result = RetrieveRenderedResult(
        path=str(path),
        content_type=media_type,
        size_bytes=len(content),
        renderer=rendered.renderer,
        width=rendered.width,
        height=rendered.height,
        window=rendered.label,
        notes=list(rendered.notes) or None,
    )
    return with_picture(result, content if show else None, media_type)


async def get_study_overview(
    app: App,
    study_uid: StudyUid,
    show: Annotated[bool, Field(description="Also return a contact sheet, a thumbnail a series.")] = False,
    server: ServerName = None,
) -> Annotated[CallToolResult, StudyOverviewResult]:
    """What a study holds: patient, study, every series, its reports; start here."""
    archive = app.archive(server)
    result = await study_overview(
        archive.client, app.store, Reference(study_uid), show=show, concurrency=archive.config.concurrency
    )
    sheet = await anyio.Path(result.contact_sheet).read_bytes() if result.contact_sheet else None
    return with_picture(result, sheet, "image/jpeg")


def with_picture(result: Record, picture: bytes | None, mime_type: str) -> CallToolResult:
    """The result as text and structured content, and the picture as image content when there is one."""
    content: list[ContentBlock] = [TextContent(type="text", text=result.model_dump_json())]
    if picture is not None:
        data = base64.b64encode(picture).decode("ascii")
        content.append(ImageContent(type="image", data=data, mime_type=mime_type))
    return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))


async def read_report(
    app: App,
    study_uid: StudyUid,
    series_uid: SeriesUid,
    instance_uid: InstanceUid,
    server: ServerName = None,
) -> ReadReportResult:
    """Read a report (Structured Report or PDF) as text."""
    instance = Reference(study_uid, series_uid, instance_uid)
    client = app.archive(server).client
    # The SOP class first: a CT slice is refused by name without being downloaded.
    query = build_query({"SOPInstanceUID": instance_uid}, limit=1)
    found = await client.search("instances", query, Reference(study_uid, series_uid))
    if not found.datasets:
        raise InvalidInputError(
            f"There is no instance {instance_uid} in series {series_uid} of study {study_uid}: list the "
            "study's reports with get_study_overview."
        )
    sop_class = element_value(found.datasets[0], "SOPClassUID")
    if sop_class and report_kind(sop_class) is None:
        raise not_a_report(sop_class)
    async with instance_file(client, app.store, instance) as path:
        report = await anyio.to_thread.run_sync(_read, path)
    text_file = instance.file(app.store.directory(), ".report.txt")
    await anyio.to_thread.run_sync(app.store.write_bytes, text_file, report.text.encode("utf-8"))
    text, truncated = cut_text(report.text)
    return ReadReportResult(
        kind=report.kind,
        title=report.title,
        text=text,
        text_file=str(text_file),
        truncated=truncated or None,
        completion_flag=report.completion_flag,
        verification_flag=report.verification_flag,
        observer=report.observer,
        content_date=report.content_date,
    )


def _read(path: Path) -> Report:
    import pydicom

    try:
        dataset = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many kinds for a damaged file
        raise ProtocolError(f"The server sent a report that does not parse as DICOM ({exc}).") from None
    return report_of(dataset)


def cut_text(text: str, limit: int = MAX_REPORT_TEXT) -> tuple[str, bool]:
    """``text`` within ``limit`` UTF-8 bytes, cut at a line end where one is near, with a closing note."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text, False
    note = f"\n[… cut here: {len(data):,} bytes in all; text_file has the whole report]"
    head = data[: limit - len(note.encode("utf-8"))].decode("utf-8", errors="ignore")
    line_end = head.rfind("\n")
    if line_end > len(head) * 0.8:
        head = head[:line_end]
    return head + note, True
