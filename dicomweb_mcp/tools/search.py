"""The search tools: named arguments and filters made into one validated QIDO query, paging that knows
whether more results exist, and summaries instead of DICOM JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import Field

from ..dicom.reference import Reference
from ..dicomweb.query import MatchValue, Resource, build_query
from .arguments import (
    Filters,
    Fuzzy,
    IncludeFields,
    Limit,
    Offset,
    OptionalSeriesUid,
    OptionalSopClassUid,
    OptionalStudyUid,
    ServerName,
    Text,
    match_pairs,
)
from .context import App, Archive
from .results import (
    InstanceSummary,
    SearchInstancesResult,
    SearchSeriesResult,
    SearchStudiesResult,
    SeriesSummary,
    StudySummary,
)
from .summary import extra_fields, summarize

__all__ = ["search_instances", "search_series", "search_studies"]

_Result = TypeVar("_Result", SearchStudiesResult, SearchSeriesResult, SearchInstancesResult)
# Each search: the resource it asks for, and the summary of a result.
_KINDS: dict[type[Any], tuple[Resource, type[Any]]] = {
    SearchStudiesResult: ("studies", StudySummary),
    SearchSeriesResult: ("series", SeriesSummary),
    SearchInstancesResult: ("instances", InstanceSummary),
}


async def search_studies(
    app: App,
    patient_name: Annotated[Text, Field(description="Wildcards * ?, e.g. Smith*.")] = None,
    patient_id: Annotated[Text, Field(description="MRN.")] = None,
    study_date: Annotated[
        Text, Field(description="YYYYMMDD, or a range 20200101-20201231 (ends optional).")
    ] = None,
    accession_number: Text = None,
    modality: Annotated[Text, Field(description="One in the study: CT, MR, ...")] = None,
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
    named = {
        "PatientName": patient_name,
        "PatientID": patient_id,
        "StudyDate": study_date,
        "AccessionNumber": accession_number,
        "ModalitiesInStudy": modality,
        "StudyDescription": study_description,
        "ReferringPhysicianName": referring_physician_name,
        "StudyInstanceUID": study_uid,
    }
    # StudyDescription is not in the standard's default return set (Orthanc leaves it out); a summary field
    # asked for is not repeated among the extra fields.
    fields = ["StudyDescription", *(include_fields or ())]
    return await _search(
        app.archive(server), None, named, filters, fields, fuzzy, limit, offset, SearchStudiesResult
    )


async def search_series(
    app: App,
    study_uid: OptionalStudyUid = None,
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
    named = {"SeriesInstanceUID": series_uid, "Modality": modality, "SeriesDescription": series_description}
    scope = Reference.scope(study_uid)
    return await _search(
        app.archive(server), scope, named, filters, include_fields, False, limit, offset, SearchSeriesResult
    )


async def search_instances(
    app: App,
    study_uid: OptionalStudyUid = None,
    series_uid: Annotated[OptionalSeriesUid, Field(description="Needs study_uid.")] = None,
    instance_uid: OptionalSeriesUid = None,
    sop_class_uid: OptionalSopClassUid = None,
    filters: Filters = None,
    include_fields: IncludeFields = None,
    limit: Limit = 25,
    offset: Offset = 0,
    server: ServerName = None,
) -> SearchInstancesResult:
    """Find instances (QIDO-RS) of a study or series; returns a summary per instance."""
    scope = Reference.scope(study_uid, series_uid)
    named = {"SOPInstanceUID": instance_uid, "SOPClassUID": sop_class_uid}
    return await _search(
        app.archive(server),
        scope,
        named,
        filters,
        include_fields,
        False,
        limit,
        offset,
        SearchInstancesResult,
    )


async def _search(
    archive: Archive,
    scope: Reference | None,
    named: Mapping[str, MatchValue | None],
    filters: list[str] | None,
    include_fields: Sequence[str] | None,
    fuzzy: bool,
    limit: int,
    offset: int,
    result: type[_Result],
) -> _Result:
    """One page of a search, asking for one result more than the page (within the server's cap) to
    know whether there are more. A dataset without the summary's own UID is not a result; the UIDs of
    the scope fill in what a scoped search leaves out."""
    resource, summary = _KINDS[result]
    # Only servers the URL gives away (Azure) cap the limit: no need to wait for detection here.
    cap = archive.client.assumed_profile().qido_limit_cap
    ask = limit + 1 if cap is None or limit + 1 <= cap else limit
    query = build_query(
        named,
        filters=match_pairs(filters),
        include_fields=include_fields or (),
        fuzzy=fuzzy,
        limit=ask,
        offset=offset,
    )
    found = await archive.client.search(resource, query, scope)
    has_more = len(found.datasets) > limit or (ask == limit and len(found.datasets) == limit)
    datasets = found.datasets[:limit]
    implied: dict[str, Any] = {}
    if scope is not None:
        implied = {"study_uid": scope.study_uid, "series_uid": scope.series_uid}
    results: list[Any] = []
    for dataset in datasets:
        values = summarize(dataset, summary)
        if summary.key not in values:
            continue
        for name in summary.model_fields.keys() & implied.keys():
            if implied[name] is not None:
                values.setdefault(name, implied[name])
        extras = extra_fields(dataset, include_fields or (), summary) or None
        results.append(summary(**values, extra_fields=extras))
    return result(
        results=results,
        returned=len(datasets),
        offset=offset,
        has_more=has_more,
        next_offset=offset + len(datasets) if has_more else None,
        warnings=found.warnings,
    )
