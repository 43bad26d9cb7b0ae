"""get_study_overview: what is in a study, in one call, and a contact sheet to look at.

Three QIDO searches whatever the study's size (the study; its series; its instances, paged only where the
server caps a page), then, with ``show``, one thumbnail per series (its middle image) rendered in
parallel, at most ``DICOMWEB_CONCURRENCY`` at a time, and put together into one small JPEG.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from ..dicom.dicomjson import element_value, sequence_items
from ..dicom.sopclass import report_kind
from ..dicom.validation import validate_uid
from ..dicomweb.models import QueryResult
from ..errors import BadRequestError, DicomWebError, InvalidInputError
from ..files.store import uid_path
from ..imaging.sheet import Tile, contact_sheet, layout
from .rendering import Rendering
from .results import (
    OverviewPatient,
    OverviewReport,
    OverviewSeries,
    OverviewStudy,
    StudyOverviewResult,
)

__all__ = ["MAX_OVERVIEW_SERIES", "Overviews"]

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
    uid, series = element_value(dataset, "00080018"), element_value(dataset, "0020000E")
    if not isinstance(uid, str) or not isinstance(series, str):
        return None
    image = element_value(dataset, "00280010") is not None
    names = sequence_items(dataset, "0040A043")
    title = element_value(dataset, "00420010") or (names and element_value(names[0], "00080104")) or None
    return series, _Instance(
        uid=uid,
        number=_int(element_value(dataset, "00200013")),
        frames=max(1, _int(element_value(dataset, "00280008"), 1)) if image else 0,
        sop_class=element_value(dataset, "00080016"),
        title=str(title) if title else None,
    )


def _middle(instances: Sequence[_Instance]) -> _Instance | None:
    images = sorted((i for i in instances if i.frames), key=lambda i: (i.number, i.uid))
    return images[len(images) // 2] if images else None


class Overviews(Rendering):
    async def _search_asking(
        self,
        search: Callable[..., Awaitable[QueryResult]],
        fields: Sequence[str],
        warnings: list[str],
        **kw: Any,
    ) -> QueryResult:
        """A search asking for ``fields`` too; a server that refuses one of them (400) is asked again
        without them, and the result says that details may be missing."""
        try:
            return await search(include_fields=fields, **kw)
        except BadRequestError:
            warnings.append(f"the server refused includefield={','.join(fields)}: some details are missing")
            return await search(**kw)

    async def _page_size(self) -> int:
        """Results asked for at once: a large page, within the server's cap (Azure: 200). Always given:
        some servers (Google) cap an unlimited search at 100 results without saying so."""
        cap = (await self.client.profile()).qido_limit_cap
        return min(cap, _INSTANCE_PAGE) if cap else _INSTANCE_PAGE

    async def _all_instances(self, study_uid: str, warnings: list[str]) -> list[Mapping[str, Any]]:
        """Every instance of the study: one search, paged only as far as the server's cap requires."""
        page = await self._page_size()
        fields: Sequence[str] = _INSTANCE_FIELDS
        found: list[Mapping[str, Any]] = []
        while True:
            before = len(warnings)
            result = await self._search_asking(
                self.client.search_instances,
                fields,
                warnings,
                study_uid=study_uid,
                limit=page,
                offset=len(found) or None,
            )
            if len(warnings) > before:
                fields = ()
            found.extend(result.datasets)
            if len(result.datasets) < page:
                return found

    async def _titles(self, study_uid: str, reports: list[tuple[str, _Instance]]) -> None:
        """The document titles a search did not return, from each report's metadata (a few at most)."""

        async def one(series_uid: str, instance: _Instance) -> None:
            try:
                datasets = await self.client.retrieve_metadata(study_uid, series_uid, instance.uid)
            except DicomWebError:
                return
            if datasets:
                names = sequence_items(datasets[0], "0040A043")
                title = element_value(datasets[0], "00420010") or (
                    names and element_value(names[0], "00080104")
                )
                instance.title = str(title) if title else None

        limiter = anyio.CapacityLimiter(self.config.concurrency)
        missing = [(s, i) for s, i in reports if not i.title][:_MAX_TITLE_LOOKUPS]

        async def limited(series_uid: str, instance: _Instance) -> None:
            async with limiter:
                await one(series_uid, instance)

        async with anyio.create_task_group() as group:
            for series_uid, instance in missing:
                group.start_soon(limited, series_uid, instance)

    async def get_study_overview(self, *, study_uid: str, show: bool = False) -> StudyOverviewResult:
        validate_uid(study_uid, "study_uid")
        warnings: list[str] = []
        studies = await self._search_asking(
            self.client.search_studies,
            ("StudyDescription", "PatientBirthDate", "PatientSex"),
            warnings,
            match={"StudyInstanceUID": study_uid},
            limit=1,
        )
        if not studies.datasets:
            raise StudyNotFoundError(
                f"There is no study {study_uid} on this server: find the study with search_studies first."
            )
        study = studies.datasets[0]
        series_found = await self._search_asking(
            self.client.search_series,
            ("SeriesDescription", "BodyPartExamined"),
            warnings,
            study_uid=study_uid,
            limit=await self._page_size(),
        )
        by_series: dict[str, list[_Instance]] = defaultdict(list)
        for dataset in await self._all_instances(study_uid, warnings):
            parsed = _instance(dataset)
            if parsed is not None:
                by_series[parsed[0]].append(parsed[1])

        series: list[OverviewSeries] = []
        for dataset in series_found.datasets:
            uid = element_value(dataset, "0020000E")
            if not isinstance(uid, str):
                continue
            members = by_series.get(uid, [])
            series.append(
                OverviewSeries(
                    series_uid=uid,
                    number=_optional_int(element_value(dataset, "00200011")),
                    modality=element_value(dataset, "00080060"),
                    description=element_value(dataset, "0008103E"),
                    body_part=element_value(dataset, "00180015"),
                    instances=len(members) or _int(element_value(dataset, "00201209")),
                    frames=sum(i.frames for i in members),
                )
            )
        series.sort(key=lambda s: (s.number if s.number is not None else 1 << 30, s.series_uid))

        reports = [
            (s.series_uid, i)
            for s in series
            for i in by_series.get(s.series_uid, [])
            if report_kind(i.sop_class)
        ]
        await self._titles(study_uid, reports)

        series_file = None
        listed = series[:MAX_OVERVIEW_SERIES]
        if len(series) > MAX_OVERVIEW_SERIES:
            path = uid_path(self.store.directory(), study_uid) / "series.json"
            await anyio.to_thread.run_sync(
                self.store.write_json, path, [s.model_dump(mode="json") for s in series]
            )
            series_file = str(path)
            warnings.append(f"{len(listed)} of {len(series)} series listed (and shown); series_file has all.")

        sheet = None
        if show:
            sheet, failed = await self._contact_sheet(study_uid, listed, by_series)
            warnings.extend(failed)

        total_instances = sum(len(v) for v in by_series.values())
        return StudyOverviewResult(
            patient=OverviewPatient(
                name=element_value(study, "00100010"),
                id=element_value(study, "00100020"),
                birth_date=element_value(study, "00100030"),
                sex=element_value(study, "00100040"),
            ),
            study=OverviewStudy(
                study_uid=study_uid,
                date=element_value(study, "00080020"),
                time=element_value(study, "00080030"),
                description=element_value(study, "00081030"),
                accession_number=element_value(study, "00080050"),
                modalities=sorted({s.modality for s in series if s.modality}) or None,
                number_of_series=len(series),
                number_of_instances=total_instances or _int(element_value(study, "00201208")),
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
        self, study_uid: str, series: Sequence[OverviewSeries], by_series: Mapping[str, Sequence[_Instance]]
    ) -> tuple[str, list[str]]:
        """Render each series' middle image, in parallel within the concurrency setting; save the sheet."""
        grid = layout(len(series))
        tiles: list[Tile] = []
        failed: list[str] = []
        limiter = anyio.CapacityLimiter(self.config.concurrency)

        async def thumbnail(index: int, entry: OverviewSeries, middle: _Instance) -> None:
            async with limiter:
                try:
                    rendered = await self.render(
                        study_uid,
                        entry.series_uid,
                        middle.uid,
                        frame=(middle.frames + 1) // 2 if middle.frames > 1 else None,
                        size=grid.tile,
                    )
                    image = await anyio.to_thread.run_sync(rendered.picture)
                except DicomWebError as exc:
                    failed.append(f"series {entry.number}: no thumbnail ({str(exc)[:120]})")
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
        path = uid_path(self.store.directory(), study_uid) / "contact-sheet.jpg"
        await anyio.to_thread.run_sync(self.store.write_bytes, path, data)
        return str(path), failed


def _tile(entry: OverviewSeries, image: Any, placeholder: str) -> Tile:
    number = f"{entry.number} " if entry.number is not None else ""
    label = f"{number}{entry.modality or ''} {entry.description or ''}".strip()
    detail = f"{entry.instances} inst" + (f", {entry.frames} fr" if entry.frames > entry.instances else "")
    return Tile(label=label, detail=detail, image=image, placeholder=placeholder)
