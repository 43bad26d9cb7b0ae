"""The three search tools' work: named arguments and filters merged into one QIDO match, paging that
knows whether more results exist, and summaries instead of DICOM JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..dicom.dictionary import resolve_attribute
from ..dicom.validation import check_scope, normalize_date_range, validate_uid
from ..dicomweb.client import DicomWebClient
from ..dicomweb.models import QueryResult
from ..dicomweb.query import MatchValue, build_query
from ..errors import InvalidInputError
from ..records import Record
from .arguments import Filter
from .results import (
    InstanceSummary,
    SearchInstancesResult,
    SearchSeriesResult,
    SearchStudiesResult,
    SeriesSummary,
    StudySummary,
)
from .summary import INSTANCE_FIELDS, SERIES_FIELDS, STUDY_FIELDS, extra_fields, summarize

__all__ = ["SearchPage", "Searches"]

_Summary = TypeVar("_Summary", bound=Record)


@dataclass(frozen=True)
class SearchPage:
    """What every search takes besides its named attributes: other filters, fields, paging."""

    filters: Mapping[str, MatchValue] | None = None
    include_fields: Sequence[str] = field(default_factory=tuple)
    fuzzy: bool = False
    limit: int = 25
    offset: int = 0

    @classmethod
    def of(
        cls,
        filters: Sequence[Filter] | None,
        include_fields: Sequence[str] | None,
        fuzzy: bool,
        limit: int,
        offset: int,
    ) -> SearchPage:
        """From the tools' arguments: ``filters`` as attribute/value items, each attribute at most once."""
        match: dict[str, MatchValue] = {}
        for item in filters or ():
            keyword = resolve_attribute(item.attribute).keyword or item.attribute
            if keyword in match:
                raise InvalidInputError(f"filters name {item.attribute} twice: give each attribute once.")
            match[item.attribute] = item.value
        return cls(match, tuple(include_fields or ()), fuzzy, limit, offset)


class Searches:
    def __init__(self, client: DicomWebClient) -> None:
        self.client = client

    @staticmethod
    def _match(explicit: Mapping[str, MatchValue | None], page: SearchPage) -> dict[str, MatchValue]:
        """Merge named arguments with ``filters``; the same attribute given twice is an error."""
        match: dict[str, MatchValue] = {}
        named = {keyword for keyword, value in explicit.items() if value is not None}
        for key, value in (page.filters or {}).items():
            attribute = resolve_attribute(key)
            if attribute.keyword in named:
                raise InvalidInputError(
                    f"{attribute.keyword} is given both as an argument and in filters: give it once."
                )
            match[key] = value
        match.update({k: v for k, v in explicit.items() if v is not None})
        return match

    async def _search(
        self,
        search: Callable[..., Awaitable[QueryResult]],
        match: Mapping[str, MatchValue],
        page: SearchPage,
        fields: Mapping[str, str],
        summary: Callable[..., _Summary],
        key: str,
        *,
        ask_fields: Sequence[str] = (),
        scope: Mapping[str, str | None] | None = None,
        **where: Any,
    ) -> tuple[list[_Summary], dict[str, Any]]:
        """Run one page of a search; ask for one result more than the page, within the server's cap, to
        know whether there are more. A dataset without the ``key`` UID is not a result; ``scope`` fills in
        the UIDs a scoped search implies. Returns the summaries and the paging fields of the result."""
        include = [*ask_fields, *page.include_fields]
        # Validate before the first request (finding the cap may mean asking the server what it is).
        build_query(match, include_fields=include, limit=page.limit, offset=page.offset)
        # Only servers the URL gives away (Azure) cap the limit: no need to wait for detection here.
        cap = self.client.assumed_profile().qido_limit_cap
        ask = page.limit + 1 if cap is None or page.limit + 1 <= cap else page.limit
        result = await search(
            match, include_fields=include, fuzzy=page.fuzzy, limit=ask, offset=page.offset, **where
        )
        datasets = result.datasets
        has_more = len(datasets) > page.limit or (ask == page.limit and len(datasets) == page.limit)
        datasets = datasets[: page.limit]
        results = []
        for dataset in datasets:
            values = summarize(dataset, fields)
            if key not in values:
                continue
            for name, value in (scope or {}).items():
                values.setdefault(name, value)
            extras = extra_fields(dataset, page.include_fields, fields.values()) or None
            results.append(summary(**values, extra_fields=extras))
        returned = len(datasets)
        paging = {
            "returned": returned,
            "offset": page.offset,
            "has_more": has_more,
            "next_offset": page.offset + returned if has_more else None,
            "warnings": result.warnings,
        }
        return results, paging

    async def search_studies(
        self,
        page: SearchPage,
        *,
        patient_name: str | None = None,
        patient_id: str | None = None,
        study_date: str | None = None,
        accession_number: str | None = None,
        modality: str | None = None,
        study_description: str | None = None,
        referring_physician_name: str | None = None,
        study_uid: str | None = None,
    ) -> SearchStudiesResult:
        match = self._match(
            {
                "PatientName": patient_name,
                "PatientID": patient_id,
                "StudyDate": normalize_date_range(study_date, "study_date") if study_date else None,
                "AccessionNumber": accession_number,
                "ModalitiesInStudy": modality,
                "StudyDescription": study_description,
                "ReferringPhysicianName": referring_physician_name,
                "StudyInstanceUID": validate_uid(study_uid, "study_uid") if study_uid else None,
            },
            page,
        )
        # StudyDescription is not in the standard's default return set (Orthanc leaves it out).
        results, paging = await self._search(
            self.client.search_studies,
            match,
            page,
            STUDY_FIELDS,
            StudySummary,
            "study_uid",
            ask_fields=["StudyDescription"],
        )
        return SearchStudiesResult(results=results, **paging)

    async def search_series(
        self,
        page: SearchPage,
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
        modality: str | None = None,
        series_description: str | None = None,
        series_number: int | None = None,
    ) -> SearchSeriesResult:
        match = self._match(
            {
                "SeriesInstanceUID": validate_uid(series_uid, "series_uid") if series_uid else None,
                "Modality": modality,
                "SeriesDescription": series_description,
                "SeriesNumber": series_number,
            },
            page,
        )
        results, paging = await self._search(
            self.client.search_series,
            match,
            page,
            SERIES_FIELDS,
            SeriesSummary,
            "series_uid",
            scope={"study_uid": study_uid},
            study_uid=study_uid,
        )
        return SearchSeriesResult(results=results, **paging)

    async def search_instances(
        self,
        page: SearchPage,
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
        instance_uid: str | None = None,
        sop_class_uid: str | None = None,
        instance_number: int | None = None,
    ) -> SearchInstancesResult:
        check_scope(study_uid, series_uid)
        match = self._match(
            {
                "SOPInstanceUID": validate_uid(instance_uid, "instance_uid") if instance_uid else None,
                "SOPClassUID": validate_uid(sop_class_uid, "sop_class_uid") if sop_class_uid else None,
                "InstanceNumber": instance_number,
            },
            page,
        )
        results, paging = await self._search(
            self.client.search_instances,
            match,
            page,
            INSTANCE_FIELDS,
            InstanceSummary,
            "instance_uid",
            scope={"study_uid": study_uid, "series_uid": series_uid},
            study_uid=study_uid,
            series_uid=series_uid,
        )
        return SearchInstancesResult(results=results, **paging)
