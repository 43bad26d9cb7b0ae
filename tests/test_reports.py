"""read_report through MCP against the real Orthanc: Structured Reports made with highdicom (Basic Text,
Enhanced with a TID 1500 measurement report, Comprehensive with an image region) and encapsulated PDFs
made from PDFs with real text, read back to the exact words; anything else refused by its SOP class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pytest
from mcp import Client

from dicomweb_mcp import Config
from dicomweb_mcp.tools.server import build_server
from tests.support.imaging import Instance, ct_slice
from tests.support.mcp import text
from tests.support.reports import (
    FINDINGS,
    IMPRESSION,
    PDF_LINES,
    basic_text_sr,
    encapsulated_pdf,
    measurement_sr,
    pdf_bytes,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def made(tmp_path: Path) -> dict[str, Instance]:
    image = ct_slice(tmp_path, rows=64, columns=64)
    source = pydicom.dcmread(image.path)
    study = image.study_uid
    return {
        "image": image,
        "basic": basic_text_sr(tmp_path, source),
        "enhanced": measurement_sr(tmp_path, source),
        "comprehensive": measurement_sr(tmp_path, source, comprehensive=True),
        "pdf": encapsulated_pdf(tmp_path, study_uid=study),
        "long": encapsulated_pdf(
            tmp_path, study_uid=study, title="Long report", document=pdf_bytes(filler_pages=20)
        ),
    }


async def read_all(config: Config, made: dict[str, Instance]) -> dict[str, Any]:
    async with Client(build_server(config)) as client:
        stored = await client.call_tool("store_instances", {"paths": [str(i.path) for i in made.values()]})
        assert stored.structured_content["counts"]["stored"] == len(made), text(stored)
        results = {name: await client.call_tool("read_report", i.reference) for name, i in made.items()}
        results["rendered_pdf"] = await client.call_tool("retrieve_rendered", made["pdf"].reference)
    return results


async def test_reports_read_back_to_the_exact_words(
    orthanc_config: Config, made: dict[str, Instance]
) -> None:
    results = await read_all(orthanc_config, made)
    for name in ("basic", "enhanced", "comprehensive", "pdf", "long"):
        assert not results[name].is_error, (name, text(results[name]))
    basic = results["basic"].structured_content
    indented_findings = FINDINGS.replace("\n", "\n    ")
    assert basic["kind"] == "sr" and basic["title"] == "Diagnostic imaging report"
    assert basic["text"] == (
        "Diagnostic imaging report\n"
        f"  Finding: {indented_findings}\n"
        f"  Impression: {IMPRESSION}\n"
        "  Finding Site: Lung (SCT 39607008)"
    )
    assert (basic["completion_flag"], basic["verification_flag"]) == ("COMPLETE", "VERIFIED")
    assert basic["observer"] == "Doe, Jane" and len(basic["content_date"]) == 8
    assert Path(basic["text_file"]).read_text() == basic["text"] and "truncated" not in basic

    enhanced = results["enhanced"].structured_content
    assert enhanced["title"] == "Imaging Measurement Report"
    for line in (
        "  Person Observer Name: Doe, Jane",
        "  Procedure reported: CT unspecified body region (LN 25045-6)",
        "  Imaging Measurements:",
        "    Measurement Group:",
        "      Tracking Identifier: Nodule 1",
        "      Finding: Nodule (SCT 27925004)",
        "      Finding Site: Lung (SCT 39607008)",
        "      Diameter: 12.5 mm",
    ):
        assert line in enhanced["text"].splitlines(), line
    assert (enhanced["completion_flag"], enhanced["verification_flag"]) == ("PARTIAL", "UNVERIFIED")
    assert enhanced["observer"] == "Doe, Jane"

    comprehensive = results["comprehensive"].structured_content["text"]
    assert "      Image Region: POLYLINE with 4 points (10,10, 20,10, 20,20, 10,10)" in comprehensive
    assert f"        Source: CT Image Storage {made['image'].instance_uid}" in comprehensive

    pdf = results["pdf"].structured_content
    assert pdf == {
        "kind": "pdf",
        "title": "Chest CT report",
        "text": "\n".join(PDF_LINES),
        "text_file": pdf["text_file"],
        "content_date": "20240316",
    }

    long = results["long"].structured_content
    assert long["truncated"] is True and long["title"] == "Long report"
    assert len(long["text"].encode()) <= 20_000 and "text_file has the whole report" in long["text"]
    whole = Path(long["text_file"]).read_text()
    assert (
        whole.startswith(long["text"].rpartition("\n[")[0])
        and "Filler sentence 19-39 of the long report." in whole
    )
    assert "[page 21]" in whole and "Filler sentence 19-39" not in long["text"]


async def test_what_is_not_a_report_is_named(orthanc_config: Config, made: dict[str, Instance]) -> None:
    results = await read_all(orthanc_config, made)
    image = results["image"]
    assert image.is_error and "CT Image Storage (1.2.840.10008.5.1.4.1.1.2), not a report" in text(image)
    assert "retrieve_rendered" in text(image)
    rendered = results["rendered_pdf"]
    assert (
        rendered.is_error and "Encapsulated PDF Storage" in text(rendered) and "read_report" in text(rendered)
    )
    async with Client(build_server(orthanc_config)) as client:
        missing = await client.call_tool("read_report", {**made["pdf"].reference, "instance_uid": "1.2.3.4"})
    assert missing.is_error and "no instance 1.2.3.4" in text(missing)
