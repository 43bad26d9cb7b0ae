"""get_study_overview: what is in a study, in one call, and a contact sheet to look at.

Three QIDO searches whatever the study's size (the study; its series; its instances, paged only where the
server caps a page), then, with ``show``, one thumbnail per series (its middle image) rendered in
parallel, at most ``DICOMWEB_CONCURRENCY`` at a time, and put together into one small JPEG.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from ..dicom.dicomjson import element_value, sequence_items
from ..dicom.reference import Reference
from ..dicom.sopclass import report_kind
from ..dicomweb.client import DicomWebClient
from ..dicomweb.models import QueryResult
from ..dicomweb.query import Resource, build_query
from ..errors import BadRequestError, DicomWebError, InvalidInputError
from ..files.store import FileStore
from ..imaging.sheet import Tile, contact_sheet, layout
from .rendering import render
from .results import (
    OverviewPatient,
    OverviewReport,
    OverviewSeries,
    OverviewStudy,
    StudyOverviewResult,
)

__all__ = ["MAX_OVERVIEW_SERIES", "page_size", "search_asking", "study_overview"]

# Series listed (and tiled) in a result; a study with more has them all in series_file.
MAX_OVERVIEW_SERIES = 30
# Report titles looked up one by one when the search did not return them (Orthanc returns no sequences).
_MAX_TITLE_LOOKUPS = 10
# The server is asked for this many results a page unless its profile caps pages lower.
_INSTANCE_PAGE = 5_000
_INSTANCE_FIELDS = (
    "SOPClassUID",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "DocumentTitle",
    "ConceptNameCodeSequence",
)


class StudyNotFoundError(InvalidInputError):
    """No study with this UID on the server."""


@dataclass
class _Instance:
    uid: str
    number: int
    frames: int  # 0 when it is not an image
    sop_class: str | None
    title: str | None


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _optional_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _instance(dataset: Mapping[str, Any]) -> tuple[str, _Instance] | None:
    uid, series = element_value(dataset, "SOPInstanceUID"), element_value(dataset, "SeriesInstanceUID")
    if not isinstance(uid, str) or not isinstance(series, str):
        return None
    image = element_value(dataset, "Rows") is not None
    return series, _Instance(
        uid=uid,
        number=_int(element_value(dataset, "InstanceNumber")),
        frames=max(1, _int(element_value(dataset, "NumberOfFrames"), 1)) if image else 0,
        sop_class=element_value(dataset, "SOPClassUID"),
        title=_title(dataset),
    )


def _middle(instances: Sequence[_Instance]) -> _Instance | None:
    images = sorted((i for i in instances if i.frames), key=lambda i: (i.number, i.uid))
    return images[len(images) // 2] if images else None


async def search_asking(
    client: DicomWebClient,
    resource: Resource,
    scope: Reference | None,
    fields: Sequence[str],
    warnings: list[str],
    **query: Any,
) -> QueryResult:
    """A search asking for ``fields`` too; a server that refuses one of them (400) is asked again
    without them, and the result says that details may be missing."""
    try:
        return await client.search(resource, build_query(include_fields=fields, **query), scope)
    except BadRequestError:
        warnings.append(f"the server refused includefield={','.join(fields)}: some details are missing")
        return await client.search(resource, build_query(**query), scope)


async def page_size(client: DicomWebClient) -> int:
    """Results asked for at once: a large page, within the server's cap (Azure: 200). Always given:
    some servers (Google) cap an unlimited search at 100 results without saying so."""
    cap = (await client.profile()).qido_limit_cap
    return min(cap, _INSTANCE_PAGE) if cap else _INSTANCE_PAGE


async def _all_instances(
    client: DicomWebClient, study: Reference, warnings: list[str]
) -> list[Mapping[str, Any]]:
    """Every instance of the study: one search, paged only as far as the server's cap requires."""
    page = await page_size(client)
    fields: Sequence[str] = _INSTANCE_FIELDS
    found: list[Mapping[str, Any]] = []
    while True:
        before = len(warnings)
        offset = len(found) or None
        result = await search_asking(
            client, "instances", study, fields, warnings, match=None, limit=page, offset=offset
        )
        if len(warnings) > before:
            fields = ()
        found.extend(result.datasets)
        if len(result.datasets) < page:
            return found


def _title(dataset: Mapping[str, Any]) -> str | None:
    names = sequence_items(dataset, "ConceptNameCodeSequence")
    title = element_value(dataset, "DocumentTitle") or (names and element_value(names[0], "CodeMeaning"))
    return str(title) if title else None


async def _titles(
    client: DicomWebClient, study: Reference, reports: list[tuple[str, _Instance]], concurrency: int
) -> None:
    """The document titles a search did not return, from each report's metadata (a few at most)."""
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(series_uid: str, instance: _Instance) -> None:
        async with limiter:
            try:
                datasets = await client.retrieve_metadata(
                    Reference(study.study_uid, series_uid, instance.uid)
                )
            except DicomWebError:
                return
        if datasets:
            instance.title = _title(datasets[0])

    async with anyio.create_task_group() as group:
        for series_uid, instance in [(s, i) for s, i in reports if not i.title][:_MAX_TITLE_LOOKUPS]:
            group.start_soon(one, series_uid, instance)


async def study_overview(
    client: DicomWebClient, store: FileStore, study: Reference, *, show: bool, concurrency: int
) -> StudyOverviewResult:
    """What ``study`` holds: patient, study, every series (with counts), its reports, and with ``show`` a
    contact sheet of the series saved beside them."""
    warnings: list[str] = []
    studies = await search_asking(
        client,
        "studies",
        None,
        ("StudyDescription", "PatientBirthDate", "PatientSex"),
        warnings,
        match={"StudyInstanceUID": study.study_uid},
        limit=1,
    )
    if not studies.datasets:
        raise StudyNotFoundError(
            f"There is no study {study.study_uid} on this server: find the study with search_studies first."
        )
    found_study = studies.datasets[0]
    page = await page_size(client)
    series_found = await search_asking(
        client, "series", study, ("SeriesDescription", "BodyPartExamined"), warnings, match=None, limit=page
    )
    by_series: dict[str, list[_Instance]] = defaultdict(list)
    for dataset in await _all_instances(client, study, warnings):
        parsed = _instance(dataset)
        if parsed is not None:
            by_series[parsed[0]].append(parsed[1])

    series: list[OverviewSeries] = []
    for dataset in series_found.datasets:
        uid = element_value(dataset, "SeriesInstanceUID")
        if not isinstance(uid, str):
            continue
        members = by_series.get(uid, [])
        series.append(
            OverviewSeries(
                series_uid=uid,
                number=_optional_int(element_value(dataset, "SeriesNumber")),
                modality=element_value(dataset, "Modality"),
                description=element_value(dataset, "SeriesDescription"),
                body_part=element_value(dataset, "BodyPartExamined"),
                instances=len(members) or _int(element_value(dataset, "NumberOfSeriesRelatedInstances")),
                frames=sum(i.frames for i in members),
            )
        )
    series.sort(key=lambda s: (s.number if s.number is not None else 1 << 30, s.series_uid))

    reports = [
        (s.series_uid, i) for s in series for i in by_series.get(s.series_uid, []) if report_kind(i.sop_class)
    ]
    await _titles(client, study, reports, concurrency)

    series_file = None
    listed = series[:MAX_OVERVIEW_SERIES]
    if len(series) > MAX_OVERVIEW_SERIES:
        path = study.file(store.directory()) / "series.json"
        await anyio.to_thread.run_sync(store.write_json, path, [s.model_dump(mode="json") for s in series])
        series_file = str(path)
        warnings.append(f"{len(listed)} of {len(series)} series listed (and shown); series_file has all.")

    sheet = None
    if show:
        sheet, failed = await _contact_sheet(client, store, study, listed, by_series, concurrency)
        warnings.extend(failed)

    total_instances = sum(len(v) for v in by_series.values())
    return StudyOverviewResult(
        patient=OverviewPatient(
            name=element_value(found_study, "PatientName"),
            id=element_value(found_study, "PatientID"),
            birth_date=element_value(found_study, "PatientBirthDate"),
            sex=element_value(found_study, "PatientSex"),
        ),
        study=OverviewStudy(
            study_uid=study.study_uid,
            date=element_value(found_study, "StudyDate"),
            time=element_value(found_study, "StudyTime"),
            description=element_value(found_study, "StudyDescription"),
            accession_number=element_value(found_study, "AccessionNumber"),
            modalities=sorted({s.modality for s in series if s.modality}) or None,
            number_of_series=len(series),
            number_of_instances=total_instances
            or _int(element_value(found_study, "NumberOfStudyRelatedInstances")),
        ),
        series=listed,
        reports=[
            OverviewReport(
                series_uid=series_uid,
                instance_uid=i.uid,
                kind="pdf" if report_kind(i.sop_class) == "pdf" else "sr",
                title=i.title,
            )
            for series_uid, i in reports
        ],
        contact_sheet=sheet,
        series_file=series_file,
        warnings=warnings or None,
    )


async def _contact_sheet(
    client: DicomWebClient,
    store: FileStore,
    study: Reference,
    series: Sequence[OverviewSeries],
    by_series: Mapping[str, Sequence[_Instance]],
    concurrency: int,
) -> tuple[str, list[str]]:
    """Render each series' middle image, in parallel within the concurrency setting; save the sheet."""
    grid = layout(len(series))
    tiles: list[Tile] = []
    failed: list[str] = []
    limiter = anyio.CapacityLimiter(concurrency)

    async def thumbnail(index: int, entry: OverviewSeries, middle: _Instance) -> None:
        async with limiter:
            try:
                rendered = await render(
                    client,
                    store,
                    Reference(study.study_uid, entry.series_uid, middle.uid),
                    frame=(middle.frames + 1) // 2 if middle.frames > 1 else None,
                    size=grid.tile,
                )
                image = await anyio.to_thread.run_sync(rendered.pixels)
            except DicomWebError as exc:
                failed.append(f"series {entry.number}: no thumbnail ({str(exc)[:300]})")
                tiles[index] = _tile(entry, None, "no preview")
                return
        tiles[index] = _tile(entry, image, "")

    middles = []
    for entry in series:
        members = by_series.get(entry.series_uid, [])
        middles.append(_middle(members))
        reports = any(report_kind(i.sop_class) for i in members)
        tiles.append(_tile(entry, None, "report" if reports else "no image"))
    async with anyio.create_task_group() as group:
        for index, (entry, middle) in enumerate(zip(series, middles, strict=True)):
            if middle is not None:
                group.start_soon(thumbnail, index, entry, middle)
    data, _ = await anyio.to_thread.run_sync(contact_sheet, tiles)
    path = study.file(store.directory()) / "contact-sheet.jpg"
    await anyio.to_thread.run_sync(store.write_bytes, path, data)
    return str(path), failed


def _tile(entry: OverviewSeries, image: Any, placeholder: str) -> Tile:
    number = f"{entry.number} " if entry.number is not None else ""
    label = f"{number}{entry.modality or ''} {entry.description or ''}".strip()
    detail = f"{entry.instances} inst" + (f", {entry.frames} fr" if entry.frames > entry.instances else "")
    return Tile(label=label, detail=detail, image=image, placeholder=placeholder)
