"""Pictures of instances, for retrieve_rendered and the overview's thumbnails.

The server renders where its profile says it sizes and windows as PS3.18 says (Orthanc: probed), with the
aspect-kept viewport and the window sent explicitly (its own default ignores the instance's window); the
picture it sends is checked for the asked size. Otherwise, or when the server refuses or fails, the
instance is fetched and rendered here (``imaging.render``); pixel data in a transfer syntax no installed
decoder reads is asked for again, decompressed by the server.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from weakref import WeakKeyDictionary

import anyio

from ..dicom.dicomjson import element_value, json_key
from ..dicom.reference import Reference
from ..dicom.sopclass import sop_class_name
from ..dicom.validation import validate_frames
from ..dicom.windows import Window, instance_window, parse_window
from ..dicomweb.client import DicomWebClient
from ..dicomweb.models import EXPLICIT_VR_LITTLE_ENDIAN
from ..errors import HTTPStatusError, InvalidInputError, UnsupportedOperationError
from ..files.store import FileStore
from ..imaging.checks import MalformedImageError, check_image
from ..imaging.pictures import MediaType, Picture
from ..imaging.render import DecoderMissingError, NotAnImageError, fitted_size, render_file
from .fetch import instance_file

if TYPE_CHECKING:
    pass

__all__ = ["DEFAULT_SIZE", "render"]

DEFAULT_SIZE = 512
WindowChoice = Window | Literal["auto"] | None
# Photometric interpretations the server is trusted with; anything else (palette colour...) is local.
_SERVER_PHOTOMETRIC = frozenset(
    {"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"}
)


def _has(metadata: Mapping[str, Any], *keywords: str) -> bool:
    return any(json_key(keyword) in metadata for keyword in keywords)


@dataclass(frozen=True)
class _ServerPlan:
    viewport: tuple[int, int] | None
    window: Window | None  # None: the server's own min-max ("auto"), or colour
    label: str | None
    expected: tuple[int, int]


def _not_an_image(metadata: Mapping[str, Any]) -> NotAnImageError:
    return NotAnImageError(
        f"This instance is {sop_class_name(element_value(metadata, 'SOPClassUID'))}: it has no pixel data to "
        "render. Reports (SR, PDF) are read with read_report."
    )


def _server_plan(
    metadata: Mapping[str, Any], frame: int | None, size: int, choice: WindowChoice, instance_uid: str = ""
) -> _ServerPlan | None:
    """What to ask the server for, from the instance's metadata; None when only a local rendering is
    right (a modality or VOI LUT, per-frame functional groups, palette colour, LINEAR_EXACT). Values no
    picture can be made with are refused here: a server can fail on them, or drop the connection."""
    uid = instance_uid or str(element_value(metadata, "SOPInstanceUID"))
    for keyword in ("Rows", "Columns"):
        if element_value(metadata, keyword) is None:
            if not _has(metadata, "PixelData"):
                raise _not_an_image(metadata)
            raise MalformedImageError(uid, keyword, None, "it is missing, yet the instance has pixel data")
    shape = check_image(partial(element_value, metadata), uid)
    rows, columns, frames = shape.rows, shape.columns, shape.frames
    if frame is not None and frame > frames:
        raise InvalidInputError(f"frame {frame} does not exist: this instance has {frames} frame(s).")
    photometric = str(element_value(metadata, "PhotometricInterpretation") or "MONOCHROME2").upper()
    if photometric not in _SERVER_PHOTOMETRIC or _has(
        metadata, "ModalityLUTSequence", "SharedFunctionalGroupsSequence"
    ):
        return None
    window: Window | None = None
    label: str | None = None
    if photometric.startswith("MONOCHROME"):
        if choice is None:
            window = instance_window(metadata)
            if window is None and _has(metadata, "VOILUTSequence"):  # a VOI LUT, and no window beside it
                return None
        elif isinstance(choice, Window):
            window = choice
        label = window.label() if window else "auto"  # the server's default is min-max
        if window is not None and window.function == "linear_exact":
            return None
    expected = fitted_size(columns, rows, size)
    return _ServerPlan(
        viewport=expected if expected != (columns, rows) else None,
        window=window,
        label=label,
        expected=expected,
    )


async def render(
    client: DicomWebClient,
    store: FileStore,
    instance: Reference,
    *,
    frame: int | None = None,
    size: int = DEFAULT_SIZE,
    window: str | None = None,
    media_type: MediaType = "image/jpeg",
    quality: int | None = None,
) -> Picture:
    """One frame as a picture, its longest edge at most ``size``, on the server or here."""
    choice = parse_window(window)
    if frame is not None:
        validate_frames([frame])
    if size < 16:
        raise InvalidInputError(f"size {size} is too small: give at least 16 pixels.")
    profile = await client.profile()
    notes: list[str] = []
    if profile.rendered and profile.rendered_viewport and profile.rendered_window:
        metadata = await _instance_metadata(client, instance)
        plan = _server_plan(metadata, frame, size, choice, instance.instance_uid or "")
        if plan is not None:
            asked = plan.window
            try:
                picture = await client.retrieve_rendered(
                    instance,
                    frame=frame,
                    media_type=media_type,
                    quality=quality,
                    viewport=plan.viewport,
                    window=(asked.center, asked.width, asked.function) if asked else None,
                )
            except HTTPStatusError as exc:
                if exc.status_code in (401, 403):
                    raise
                notes.append(f"the server could not render it (HTTP {exc.status_code}): rendered here")
            else:
                if (picture.width, picture.height) == plan.expected:
                    return replace(picture, label=plan.label, window=asked)
                notes.append("the server did not size the picture as asked: rendered here")
    picture = await _render_here(
        client, store, instance, partial(render_file, frame=frame, size=size, window=choice), notes
    )
    return replace(picture, notes=(*notes, *picture.notes))


# An instance's metadata, kept a while per client: a viewer scrolling back and forth, or changing the
# window, renders each slice several times. Kept five minutes only, as an instance can be deleted and
# stored again under its UID.
_METADATA_SECONDS = 300.0
_METADATA_KEPT = 2048
_metadata: WeakKeyDictionary[DicomWebClient, OrderedDict[str, tuple[float, Mapping[str, Any]]]] = (
    WeakKeyDictionary()
)


async def _instance_metadata(client: DicomWebClient, instance: Reference) -> Mapping[str, Any]:
    if client.config.on_behalf_of:
        # One client serves every person, each allowed what the archive grants them: nothing is shared.
        datasets = await client.retrieve_metadata(instance)
        return datasets[0] if datasets else {}
    kept = _metadata.setdefault(client, OrderedDict())
    key, now = instance.path, time.monotonic()
    if key in kept and now - kept[key][0] < _METADATA_SECONDS:
        kept.move_to_end(key)
        return kept[key][1]
    datasets = await client.retrieve_metadata(instance)
    metadata = datasets[0] if datasets else {}
    kept[key] = (now, metadata)
    while len(kept) > _METADATA_KEPT:
        kept.popitem(last=False)
    return metadata


async def _render_here(
    client: DicomWebClient,
    store: FileStore,
    instance: Reference,
    render: Callable[[Path], Picture],
    notes: list[str],
) -> Picture:
    async with instance_file(client, store, instance) as path:
        try:
            return await anyio.to_thread.run_sync(render, path)
        except DecoderMissingError as exc:
            missing = exc.transfer_syntax
    # No decoder here for how it is stored: ask the server for it decompressed.
    try:
        async with instance_file(client, store, instance, transfer_syntax=EXPLICIT_VR_LITTLE_ENDIAN) as path:
            picture = await anyio.to_thread.run_sync(render, path)
    except HTTPStatusError as exc:
        raise UnsupportedOperationError(
            f"The pixel data is stored as {missing}, which no decoder installed here reads, and the "
            f"server would not send it decompressed (HTTP {exc.status_code}). Install "
            "pylibjpeg-libjpeg (JPEG lossless, JPEG-LS; GPL-3.0) in dicomweb-mcp's environment, or "
            "download the file with retrieve_instances."
        ) from None
    notes.append(f"{missing} pixel data decompressed by the server")
    return picture
