"""The tools' results as pydantic models: their JSON Schemas are the tools' output schemas (schemas/).

Results are summaries and file paths, never raw DICOM JSON: bulk data goes to files under the download
directory. Fields without a value are left out of the JSON an agent receives.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from ..dicomweb.models import ChangeFeedEntry, DeleteResult
from ..records import Record
from .summary import Keyword

__all__ = [
    "ChangeFeedResult",
    "CohortFailure",
    "CohortJobResult",
    "CohortStudies",
    "DeleteResult",
    "FileProblem",
    "InstanceMetadata",
    "InstanceSummary",
    "OverviewPatient",
    "OverviewReport",
    "OverviewSeries",
    "OverviewStudy",
    "ReadReportResult",
    "RetrieveFramesResult",
    "RetrieveInstancesResult",
    "RetrieveMetadataResult",
    "RetrieveRenderedResult",
    "SearchInstancesResult",
    "SearchSeriesResult",
    "SearchStudiesResult",
    "SeriesSummary",
    "ServerCapabilities",
    "ServerInfo",
    "StoreCounts",
    "StoreInstancesResult",
    "StudyOverviewResult",
    "StudySummary",
    "Summary",
    "TransferCounts",
    "TransferProblem",
    "TransferResult",
]

# A result lists a few saved files as examples; the manifest (or the metadata file) has them all. The
# text an agent reads then stays the same size for 3 files or 3,000.
MAX_LISTED_FILES = 5
# A report's text in a result; the whole text is saved beside the instance.
MAX_REPORT_TEXT = 20_000

Scalar = str | int | float
Value = Scalar | list[Scalar]


# ---- search -------------------------------------------------------------------------------------


class Summary(Record):
    """A search result or an instance's metadata: fields read from DICOM attributes (``Keyword``)."""

    key: ClassVar[str]  # the field a dataset must have to be a result


class StudySummary(Summary):
    key: ClassVar[str] = "study_uid"
    study_uid: Annotated[str, Keyword("StudyInstanceUID")]
    patient_name: Annotated[str | None, Keyword("PatientName")] = None
    patient_id: Annotated[str | None, Keyword("PatientID")] = None
    patient_birth_date: Annotated[str | None, Keyword("PatientBirthDate")] = None
    patient_sex: Annotated[str | None, Keyword("PatientSex")] = None
    study_date: Annotated[str | None, Keyword("StudyDate")] = None
    study_time: Annotated[str | None, Keyword("StudyTime")] = None
    accession_number: Annotated[str | None, Keyword("AccessionNumber")] = None
    study_description: Annotated[str | None, Keyword("StudyDescription")] = None
    modalities: Annotated[list[str] | None, Keyword("ModalitiesInStudy")] = None
    number_of_series: Annotated[int | None, Keyword("NumberOfStudyRelatedSeries")] = None
    number_of_instances: Annotated[int | None, Keyword("NumberOfStudyRelatedInstances")] = None
    extra_fields: dict[str, Value] | None = Field(
        None, description="Attributes asked for with include_fields, by DICOM keyword."
    )


class SeriesSummary(Summary):
    key: ClassVar[str] = "series_uid"
    study_uid: Annotated[str | None, Keyword("StudyInstanceUID")] = None
    series_uid: Annotated[str, Keyword("SeriesInstanceUID")]
    modality: Annotated[str | None, Keyword("Modality")] = None
    series_number: Annotated[int | None, Keyword("SeriesNumber")] = None
    series_description: Annotated[str | None, Keyword("SeriesDescription")] = None
    series_date: Annotated[str | None, Keyword("SeriesDate")] = None
    body_part_examined: Annotated[str | None, Keyword("BodyPartExamined")] = None
    number_of_instances: Annotated[int | None, Keyword("NumberOfSeriesRelatedInstances")] = None
    extra_fields: dict[str, Value] | None = None


class InstanceSummary(Summary):
    key: ClassVar[str] = "instance_uid"
    study_uid: Annotated[str | None, Keyword("StudyInstanceUID")] = None
    series_uid: Annotated[str | None, Keyword("SeriesInstanceUID")] = None
    instance_uid: Annotated[str, Keyword("SOPInstanceUID")]
    sop_class_uid: Annotated[str | None, Keyword("SOPClassUID")] = None
    instance_number: Annotated[int | None, Keyword("InstanceNumber")] = None
    modality: Annotated[str | None, Keyword("Modality")] = None
    rows: Annotated[int | None, Keyword("Rows")] = None
    columns: Annotated[int | None, Keyword("Columns")] = None
    number_of_frames: Annotated[int | None, Keyword("NumberOfFrames")] = None
    extra_fields: dict[str, Value] | None = None


class _Page(Record):
    returned: int = Field(description="Number of results in this page.")
    offset: int = Field(description="Offset of the first result of this page.")
    has_more: bool = Field(description="True when the server has more matches: call again with next_offset.")
    next_offset: int | None = Field(None, description="Offset to pass to get the next page.")
    warnings: list[str] = Field(default_factory=list, description="How the query was adapted to the server.")


class SearchStudiesResult(_Page):
    results: list[StudySummary]


class SearchSeriesResult(_Page):
    results: list[SeriesSummary]


class SearchInstancesResult(_Page):
    results: list[InstanceSummary]


# ---- retrieve -----------------------------------------------------------------------------------


class RetrieveInstancesResult(Record):
    directory: str = Field(description="The study's directory: {series_uid}/{instance_uid}.dcm below it.")
    file_count: int
    total_bytes: int
    files: list[str] = Field(description=f"The first {MAX_LISTED_FILES} files, relative to directory.")
    manifest: str = Field(description="JSON file listing every saved file.")
    warnings: list[str] | None = None


class InstanceMetadata(Summary):
    key: ClassVar[str] = "instance_uid"
    instance_uid: Annotated[str, Keyword("SOPInstanceUID")]
    series_uid: Annotated[str | None, Keyword("SeriesInstanceUID")] = None
    sop_class_uid: Annotated[str | None, Keyword("SOPClassUID")] = None
    instance_number: Annotated[int | None, Keyword("InstanceNumber")] = None
    modality: Annotated[str | None, Keyword("Modality")] = None
    series_number: Annotated[int | None, Keyword("SeriesNumber")] = None
    series_description: Annotated[str | None, Keyword("SeriesDescription")] = None
    rows: Annotated[int | None, Keyword("Rows")] = None
    columns: Annotated[int | None, Keyword("Columns")] = None
    number_of_frames: Annotated[int | None, Keyword("NumberOfFrames")] = None
    photometric_interpretation: Annotated[str | None, Keyword("PhotometricInterpretation")] = None
    bits_allocated: Annotated[int | None, Keyword("BitsAllocated")] = None
    transfer_syntax_uid: Annotated[str | None, Keyword("TransferSyntaxUID")] = None


class RetrieveMetadataResult(Record):
    instances: list[InstanceMetadata] = Field(
        description=f"Per-instance summaries (at most {MAX_LISTED_FILES})."
    )
    instance_count: int
    metadata_file: str = Field(description="Path of the full DICOM JSON metadata, saved.")


class RetrieveFramesResult(Record):
    directory: str
    frame_count: int
    total_bytes: int
    files: list[str] = Field(description=f"The first {MAX_LISTED_FILES} frame files, relative to directory.")
    content_type: str
    transfer_syntax_uid: str | None = None


class RetrieveRenderedResult(Record):
    path: str
    content_type: str
    size_bytes: int
    renderer: Literal["server", "local"] = Field(
        description="server: WADO-RS rendered; local: rendered here from the pixel data."
    )
    width: int
    height: int
    window: str | None = Field(None, description="The window applied: its source, center/width.")
    notes: list[str] | None = None


# ---- look and read ------------------------------------------------------------------------------


class OverviewPatient(Record):
    name: str | None = None
    id: str | None = None
    birth_date: str | None = None
    sex: str | None = None


class OverviewStudy(Record):
    study_uid: str
    date: str | None = None
    time: str | None = None
    description: str | None = None
    accession_number: str | None = None
    modalities: list[str] | None = None
    number_of_series: int
    number_of_instances: int


class OverviewSeries(Record):
    series_uid: str
    number: int | None = None
    modality: str | None = None
    description: str | None = None
    body_part: str | None = None
    instances: int
    frames: int = Field(description="Frames of its images (0 for reports and other non-images).")


class OverviewReport(Record):
    series_uid: str
    instance_uid: str
    kind: Literal["sr", "pdf"]
    title: str | None = None


class StudyOverviewResult(Record):
    patient: OverviewPatient
    study: OverviewStudy
    series: list[OverviewSeries] = Field(description="In series number order.")
    reports: list[OverviewReport] = Field(description="Read them with read_report.")
    contact_sheet: str | None = Field(
        None, description="With show: the saved sheet, one tile per series in this order, row by row."
    )
    series_file: str | None = Field(None, description="When the series list was cut: all of them, saved.")
    warnings: list[str] | None = None


class ReadReportResult(Record):
    kind: Literal["sr", "pdf"]
    title: str
    text: str = Field(description=f"At most {MAX_REPORT_TEXT:,} bytes; text_file has all of it.")
    text_file: str
    truncated: bool | None = None
    completion_flag: str | None = None
    verification_flag: str | None = None
    observer: str | None = None
    content_date: str | None = None


# ---- store / delete -----------------------------------------------------------------------------


# Failures are listed in full up to this many; each needs its reason to be acted on.
MAX_LISTED_PROBLEMS = 20


class FileProblem(Record):
    path: str
    reason: str
    reason_code: int | None = None


class StoreCounts(Record):
    stored: int
    already_present: int
    failed: int
    skipped: int


class StoreInstancesResult(Record):
    counts: StoreCounts
    study_uids: list[str] = Field(description="The studies the stored and present files belong to.")
    stored: list[str] = Field(description=f"The first {MAX_LISTED_FILES} files stored.")
    already_present: list[str] = Field(description=f"The first {MAX_LISTED_FILES} already stored.")
    failed: list[FileProblem] = Field(
        description=f"Files the server refused (at most {MAX_LISTED_PROBLEMS})."
    )
    skipped: list[FileProblem] = Field(
        description=f"Files not sent: not DICOM, unreadable, or missing (at most {MAX_LISTED_PROBLEMS})."
    )
    warnings: list[str] = Field(default_factory=list)


class TransferCounts(Record):
    retrieved: int
    stored: int
    already_present: int
    failed: int


class TransferProblem(Record):
    instance_uid: str
    reason: str


class TransferResult(Record):
    source: str
    destination: str
    deidentified: bool
    counts: TransferCounts
    total_bytes: int
    study_uids: list[str] = Field(description="The studies at the destination (new UIDs when de-identified).")
    failed: list[TransferProblem] = Field(description=f"At most {MAX_LISTED_PROBLEMS}.")
    warnings: list[str] = Field(default_factory=list)


# ---- cohort jobs --------------------------------------------------------------------------------


class CohortStudies(Record):
    total: int
    done: int
    failed: int
    pending: int
    running: int


class CohortFailure(Record):
    study_uid: str
    reason: str


class CohortJobResult(Record):
    job_id: str
    state: Literal["running", "finished", "cancelled"]
    source: str
    destination: str = Field(
        description="A server's name, or the job's directory under the download directory."
    )
    deidentified: bool
    format: str
    studies: CohortStudies
    bytes: int = Field(description="Of the studies done.")
    rate_mb_per_s: float | None = None
    seconds_left: float | None = None
    manifest: str | None = Field(None, description="Once the job has ended: a JSON line per study.")
    failed: list[CohortFailure] = Field(
        default_factory=list, description="The first 5; the manifest has all."
    )
    note: str | None = None


# ---- change feed / server -----------------------------------------------------------------------


class ChangeFeedResult(Record):
    entries: list[ChangeFeedEntry]
    next_offset: int | None = Field(None, description="Offset to pass to read the entries after these.")
    metadata_file: str | None = Field(
        None, description="With include_metadata: the entries' metadata, saved."
    )


class ServerCapabilities(Record):
    delete: bool
    change_feed: bool
    rendered: bool
    single_part_store: bool


class ServerInfo(Record):
    name: str
    base_url: str
    server_kind: str
    auth: str
    reachable: bool | None = Field(None, description="Absent when not probed.")
    error: str | None = None
    capabilities: ServerCapabilities | None = Field(None, description="Only when the server answered.")
    download_dir: str
    read_only: bool
    delete_enabled: bool
    servers: list[ServerInfo] | None = Field(default=None, description="The other configured servers.")
