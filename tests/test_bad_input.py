"""Bad arguments across every tool: each is refused with a specific message, and no request leaves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from dicomweb_mcp import Config
from dicomweb_mcp.tools.server import build_server
from tests.support.mcp import ALL_TOOLS, text

pytestmark = pytest.mark.anyio

REF = {"study_uid": "1.2.3", "series_uid": "1.2.3.4", "instance_uid": "1.2.3.4.5"}

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("search_studies", {"study_uid": "1.2.x"}, "not a valid DICOM UID"),
    ("search_studies", {"study_uid": "1" * 65}, "not a valid DICOM UID"),
    ("search_studies", {"study_date": "2020-02-30"}, "not a date"),
    ("search_studies", {"study_date": "20201301"}, "not a date"),
    ("search_studies", {"study_date": "yesterday"}, "not a date"),
    ("search_studies", {"study_date": "20200101-2020"}, "not a date"),
    ("search_studies", {"filters": {"PatientNmae": "x"}}, "not a DICOM keyword"),
    ("search_studies", {"filters": {"StudyDate": "2020-13-01"}}, "not a date"),
    ("search_studies", {"filters": {"StudyTime": "25:00"}}, "not a time"),
    ("search_studies", {"filters": {"SeriesInstanceUID": "abc"}}, "not a valid DICOM UID"),
    ("search_studies", {"filters": {"(0010,00ZZ)": "x"}}, "not a DICOM keyword or tag"),
    ("search_studies", {"include_fields": ["NotAKeyword"]}, "not a DICOM keyword"),
    ("search_studies", {"limit": 0}, "limit must be between 1 and 200, not 0"),
    ("search_studies", {"limit": 201}, "limit must be between 1 and 200, not 201"),
    ("search_studies", {"offset": -1}, "offset must be at least 0, not -1"),
    ("search_studies", {"patient_name": "A*", "filters": {"PatientName": "B*"}}, "given both"),
    ("search_studies", {"patient_name": "A\x00B"}, "control characters"),
    ("search_studies", {"patient": "Smith"}, "'patient' is not an argument of search_studies"),
    (
        "search_studies",
        {"PatientName": "Smith"},
        "did you mean 'patient_name'?). Valid arguments: accession_number,",
    ),
    ("search_series", {"StudyInstanceUID": "1.2.3"}, "did you mean 'study_uid'?"),
    ("search_series", {"study_uid": "../x"}, "not a valid DICOM UID"),
    ("search_series", {"series_uid": "1.2..3"}, "not a valid DICOM UID"),
    (
        "search_series",
        {"filters": [{"attribute": "SeriesNumber", "value": "1"}] * 2},
        "give each attribute once",
    ),
    ("search_series", {"filters": {"Modalty": "CT"}}, "Did you mean 'Modality'"),
    ("search_instances", {"series_uid": "1.2.3"}, "only together with study_uid"),
    ("search_instances", {"sop_class_uid": "CT"}, "not a valid DICOM UID"),
    ("search_instances", {"filters": [{"attribute": "InstanceNumber"}]}, "InstanceNumber has no value"),
    ("search_instances", {"filters": ["InstanceNumber"]}, "'InstanceNumber' is not Keyword=value"),
    ("retrieve_instances", {"study_uid": ""}, "not a valid DICOM UID"),
    ("retrieve_instances", {}, "'study_uid' is required"),
    ("retrieve_instances", {"study_uid": "1.2.3", "instance_uid": "1.2.3.4"}, "needs series_uid"),
    ("retrieve_instances", {"study_uid": "1.2.3", "transfer_syntax": "jpeg"}, "should match pattern"),
    ("retrieve_instances", {"study_uid": "1.2.3", "output_dir": "/etc"}, "outside the download directory"),
    (
        "retrieve_instances",
        {"study_uid": "1.2.3", "output_dir": "../../.."},
        "outside the download directory",
    ),
    ("retrieve_metadata", {"study_uid": "1.2.3", "series_uid": "1.2.3/../4"}, "not a valid DICOM UID"),
    ("retrieve_metadata", {"study_uid": "1.2.3", "instance_uid": "1.2.3.4"}, "needs series_uid"),
    ("retrieve_frames", {**REF, "frames": [0]}, "frames.0 must be at least 1, not 0"),
    ("retrieve_frames", {**REF, "frames": []}, "at least 1 item"),
    ("retrieve_frames", {**REF, "frames": ["a"]}, "valid integer"),
    ("retrieve_frames", {**REF}, "'frames' is required"),
    (
        "retrieve_frames",
        {"study_uid": "1.2.3", "series_uid": "1.2.3.4", "frames": [1]},
        "'instance_uid' is required",
    ),
    (
        "retrieve_frames",
        {**REF, "frames": [1], "transfer_syntax": "1.2.840.10008.1.2.4.50x"},
        "should match pattern",
    ),
    ("retrieve_rendered", {**REF, "media_type": "image/gif"}, "'image/jpeg' or 'image/png'"),
    ("retrieve_rendered", {**REF, "quality": 0}, "quality must be between 1 and 100, not 0"),
    ("retrieve_rendered", {**REF, "quality": 101}, "quality must be between 1 and 100, not 101"),
    ("retrieve_rendered", {**REF, "frame": 0}, "frame must be at least 1, not 0"),
    ("retrieve_rendered", {**REF, "size": 8}, "size must be between 16 and 4096, not 8"),
    ("retrieve_rendered", {**REF, "window": "lungs"}, "must be lung, mediastinum, bone, brain, abdomen"),
    ("retrieve_rendered", {**REF, "window": "40,0"}, "width of at least 1"),
    ("retrieve_rendered", {**REF, "window": "40;400"}, "such as '40,400'"),
    ("get_study_overview", {"study_uid": "1.2.3*"}, "not a valid DICOM UID"),
    ("get_study_overview", {"study": "1.2.3"}, "'study' is not an argument of get_study_overview"),
    ("read_report", {"study_uid": "1.2.3", "series_uid": "1.2.3.4"}, "'instance_uid' is required"),
    ("read_report", {**REF, "instance_uid": "1.2.3.4/.."}, "not a valid DICOM UID"),
    ("store_instances", {"paths": []}, "at least 1 item"),
    ("store_instances", {"paths": "/tmp/a.dcm"}, "valid list"),
    ("store_instances", {"paths": ["/tmp/a.dcm"], "encoding": "zip"}, "'multipart' or 'single-part'"),
    ("store_instances", {"paths": ["/tmp/a.dcm"], "study_uid": "x"}, "not a valid DICOM UID"),
    ("get_change_feed", {"limit": 0}, "limit must be between 1 and 200, not 0"),
    ("get_change_feed", {"limit": 300}, "limit must be between 1 and 200, not 300"),
    ("get_change_feed", {"offset": -5}, "offset must be at least 0, not -5"),
    ("get_change_feed", {"start_time": "2024-01-01T00:00:00Z"}, "need the v2 API"),
    ("delete_instances", {"study_uid": "1.2.3*"}, "not a valid DICOM UID"),
    ("delete_instances", {"study_uid": "1.2.3", "instance_uid": "1.2.3.4"}, "needs series_uid"),
    # An empty UID (what a strict-mode model sends for 'not given') must not widen a delete to the study.
    ("delete_instances", {"study_uid": "1.2.3", "series_uid": ""}, "series_uid is empty"),
    ("start_cohort", {"study_uids": ["1.2.3*"]}, "not a valid DICOM UID"),
    ("start_cohort", {}, "either as study_uids"),
    ("start_cohort", {"study_uids": ["1.2.3"], "filters": ["Modality"]}, "is not Keyword=value"),
    (
        "start_cohort",
        {"study_uids": ["1.2.3"], "format": "nifti", "destination": "default", "deidentify": True},
        "leave destination out",
    ),
    ("start_cohort", {"study_uids": ["1.2.3"], "format": "png"}, "format"),
    ("cohort_status", {"job_id": "../../etc"}, "is not a job id"),
    ("cohort_status", {"wait": 600}, "wait"),
]


def test_at_least_forty_cases_over_every_tool() -> None:
    assert len(CASES) >= 40
    assert {tool for tool, _, _ in CASES} == ALL_TOOLS - {"server_info"}  # server_info takes no arguments


@pytest.mark.parametrize(("tool", "arguments", "message"), CASES)
async def test_bad_input(tool: str, arguments: dict[str, Any], message: str, tmp_path: Path) -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    config = Config.single(
        url="http://dicomweb.invalid/dicom-web", download_dir=tmp_path / "dl", allow_delete=True
    )
    async with Client(build_server(config, transports={"default": httpx.MockTransport(record)})) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error, text(result)
    assert message in text(result)
    # Written for the reader: no validator class names or documentation links.
    assert "pydantic" not in text(result) and "validation error for" not in text(result)
    # Nothing but the server-kind detection that starts with the session left for the server.
    assert [r.url.path for r in sent if r.url.path != "/system"] == []
    assert not (tmp_path / "dl").exists() or not any((tmp_path / "dl").rglob("*.*"))


@pytest.mark.parametrize(
    ("name", "allow_delete", "message"),
    [
        ("search_study", False, "Did you mean 'search_studies'? Tools here: cohort_status, get_change_feed,"),
        ("delete_instances", False, "the operator enables it with DICOMWEB_ALLOW_DELETE=true"),
        (
            "fetch_everything",
            True,
            "There is no tool named 'fetch_everything'. Tools here: cohort_status, delete_instances,",
        ),
    ],
)
async def test_unknown_tool_lists_what_exists(
    name: str, allow_delete: bool, message: str, tmp_path: Path
) -> None:
    config = Config.single(
        url="http://dicomweb.invalid/dicom-web", download_dir=tmp_path, allow_delete=allow_delete
    )
    async with Client(build_server(config)) as client:
        result = await client.call_tool(name, {})
    assert result.is_error
    assert message in text(result)
