"""The study viewer (MCP Apps): the page a host shows beside get_study_overview, and the two tools only
that page calls (``_meta.ui.visibility`` ``["app"]``).

The page never talks to the archive: it asks the host to call viewer_series and viewer_frame, and the
server fetches with its own credentials. A host that does not render apps sees neither tool
(tools/server.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from itertools import pairwise
from typing import Annotated, Any, Literal

import anyio
from mcp.types import CallToolResult
from pydantic import Field

from ..dicom.dicomjson import element_value, element_values
from ..dicom.reference import Reference
from ..dicomweb.client import DicomWebClient
from ..errors import DicomWebError, InvalidInputError
from ..files.store import FileStore
from ..records import Record
from .arguments import InstanceUid, SeriesUid, ServerName, StudyUid, Text
from .context import App
from .look import with_picture
from .overview import page_size, search_asking
from .rendering import render

__all__ = [
    "VIEWER_URI",
    "ViewerFirstPicture",
    "ViewerFrameResult",
    "ViewerInstance",
    "ViewerSeriesResult",
    "viewer_frame",
    "viewer_html",
    "viewer_series",
]

VIEWER_URI = "ui://dicomweb-mcp/viewer.html"
# What viewer_series asks the search for: the order and the frame count of each instance.
_FIELDS = ("InstanceNumber", "NumberOfFrames", "ImagePositionPatient", "ImageOrientationPatient", "Rows")


def viewer_html() -> str:
    """The viewer page, one self-contained document shipped in the package."""
    return resources.files(__package__).joinpath("viewer.html").read_text(encoding="utf-8")


class ViewerInstance(Record):
    uid: str
    number: int | None = None
    frames: int = Field(description="Frames (1 for a single-frame image, 0 for a non-image).")


class ViewerFrameResult(Record):
    width: int
    height: int
    window: str | None = None
    window_center: float | None = Field(
        default=None,
        description="With window_width: in modality units; absent for the server's min-max, a VOI LUT.",
    )
    window_width: float | None = None
    renderer: str


class ViewerFirstPicture(ViewerFrameResult):
    instance_uid: str
    frame: int | None = None


class ViewerSeriesResult(Record):
    study_uid: str
    series_uid: str
    order: Literal["position", "number"] = Field(
        description="position: along the slice normal (ImagePositionPatient); number: Instance Number."
    )
    instances: list[ViewerInstance] = Field(description="In display order.")
    first: ViewerFirstPicture | None = Field(
        default=None, description="With a size: the middle slice, whose picture is the image content."
    )
    warnings: list[str] | None = None


async def viewer_series(
    app: App,
    study_uid: StudyUid,
    series_uid: SeriesUid,
    size: Annotated[
        int | None, Field(ge=16, le=2048, description="Also the middle slice's picture, at this size.")
    ] = None,
    server: ServerName = None,
) -> Annotated[CallToolResult, ViewerSeriesResult]:
    """The instances of a series in display order, with their frame counts (for the study viewer)."""
    series = Reference(study_uid, series_uid)
    client = app.archive(server).client
    page = await page_size(client)
    warnings: list[str] = []
    found: list[Mapping[str, Any]] = []
    while True:
        result = await search_asking(
            client, "instances", series, _FIELDS, warnings, match=None, limit=page, offset=len(found) or None
        )
        found.extend(result.datasets)
        if len(result.datasets) < page:
            break
    if not found:
        raise InvalidInputError(
            f"There is no series {series_uid} in study {study_uid} on this server, or it has no instances."
        )
    order, instances = display_order(found)
    # The picture the viewer opens on comes with the list: one round trip through the host instead of two.
    slices = [(i.uid, f if i.frames > 1 else None) for i in instances for f in range(1, i.frames + 1)]
    picture, first = None, None
    if size is not None and slices:
        instance_uid, frame = slices[len(slices) // 2]
        try:
            picture, facts = await _frame(
                client, app.store, Reference(study_uid, series_uid, instance_uid), frame, size, None
            )
        except DicomWebError as exc:  # the list still stands; the page asks viewer_frame, which says why
            warnings.append(f"The middle slice could not be shown: {exc}")
        else:
            first = ViewerFirstPicture(instance_uid=instance_uid, frame=frame, **facts.model_dump())
    listed = ViewerSeriesResult(
        study_uid=study_uid,
        series_uid=series_uid,
        order=order,
        instances=instances,
        first=first,
        warnings=warnings or None,
    )
    return with_picture(listed, picture, "image/jpeg")


def display_order(
    datasets: Sequence[Mapping[str, Any]],
) -> tuple[Literal["position", "number"], list[ViewerInstance]]:
    """Instances along the slice normal when every image has a position and all share one orientation
    (neighbours on screen are neighbours in the body), else by Instance Number. Along the normal, the
    direction is the one the numbering mostly runs in."""
    rows: list[tuple[ViewerInstance, float | None]] = []
    orientations: set[tuple[float, ...]] = set()
    for dataset in datasets:
        uid = element_value(dataset, "SOPInstanceUID")
        if not uid:
            continue
        image = element_value(dataset, "Rows") is not None  # as the overview counts frames
        frames = max(1, _int(element_value(dataset, "NumberOfFrames")) or 1) if image else 0
        instance = ViewerInstance(
            uid=str(uid), number=_int(element_value(dataset, "InstanceNumber")), frames=frames
        )
        position = _floats(element_values(dataset, "ImagePositionPatient"), 3)
        orientation = _floats(element_values(dataset, "ImageOrientationPatient"), 6)
        if orientation is not None:
            orientations.add(tuple(round(v, 4) for v in orientation))
        distance = None
        if position is not None and orientation is not None:
            distance = sum(p * n for p, n in zip(position, _normal(orientation), strict=True))
        rows.append((instance, distance))
    by_number = sorted(rows, key=lambda r: (r[0].number is None, r[0].number or 0, r[0].uid))
    if len(orientations) != 1 or any(d is None for _, d in rows):
        return "number", [instance for instance, _ in by_number]
    by_position = sorted(rows, key=lambda r: (r[1], r[0].number or 0, r[0].uid))
    numbers = [instance.number for instance, _ in by_position if instance.number is not None]
    rising = sum(b > a for a, b in pairwise(numbers))
    falling = sum(b < a for a, b in pairwise(numbers))
    if falling > rising:
        by_position.reverse()
    return "position", [instance for instance, _ in by_position]


def _normal(orientation: Sequence[float]) -> tuple[float, float, float]:
    r, c = orientation[:3], orientation[3:]
    return (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])


def _floats(values: list[Any], count: int) -> list[float] | None:
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


async def viewer_frame(
    app: App,
    study_uid: StudyUid,
    series_uid: SeriesUid,
    instance_uid: InstanceUid,
    frame: Annotated[int | None, Field(ge=1, description="Frame number, from 1.")] = None,
    size: Annotated[int, Field(ge=16, le=2048, description="Longest edge, pixels.")] = 512,
    window: Annotated[Text, Field(description="lung, bone, ... or center,width; default: the image's.")] = (
        None
    ),
    server: ServerName = None,
) -> Annotated[CallToolResult, ViewerFrameResult]:
    """One frame as a JPEG picture at the viewport's size (for the study viewer)."""
    instance = Reference(study_uid, series_uid, instance_uid)
    content, result = await _frame(app.archive(server).client, app.store, instance, frame, size, window)
    return with_picture(result, content, "image/jpeg")


async def _frame(
    client: DicomWebClient,
    store: FileStore,
    instance: Reference,
    frame: int | None,
    size: int,
    window: str | None,
) -> tuple[bytes, ViewerFrameResult]:
    rendered = await render(client, store, instance, frame=frame, size=size, window=window)
    content = await anyio.to_thread.run_sync(rendered.encoded, "image/jpeg", None)
    applied = rendered.window
    facts = ViewerFrameResult(
        width=rendered.width,
        height=rendered.height,
        window=rendered.label,
        window_center=applied.center if applied else None,
        window_width=applied.width if applied else None,
        renderer=rendered.renderer,
    )
    return content, facts
