"""What the model reads back stays small whatever the study: the text block of each result, measured on
a generated 150-instance study through MCP against the real Orthanc."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client
from mcp.types import CallToolResult

from dicomweb_mcp import Config
from dicomweb_mcp.tools.server import build_server
from tests.support.synthetic import make_study

pytestmark = pytest.mark.anyio


def text_bytes(result: CallToolResult) -> int:
    assert not result.is_error, result.content
    return sum(len(getattr(block, "text", "").encode()) for block in result.content)


async def test_results_fit_whatever_the_study_size(orthanc_config: Config, tmp_path: Path) -> None:
    files = make_study(tmp_path / "study", instances=150, series=3, rows=16, columns=16)
    async with Client(build_server(orthanc_config)) as client:
        stored = await client.call_tool("store_instances", {"paths": [str(tmp_path / "study")]})
        assert stored.structured_content is not None and stored.structured_content["counts"]["stored"] == 150
        found = await client.call_tool("search_studies", {"patient_id": "SYN0"})
        study_uid = found.structured_content["results"][0]["study_uid"]  # type: ignore[index]
        retrieved = await client.call_tool("retrieve_instances", {"study_uid": study_uid})
        metadata = await client.call_tool("retrieve_metadata", {"study_uid": study_uid})
    assert text_bytes(stored) < 2_000
    assert text_bytes(found) < 600
    assert text_bytes(retrieved) < 2_000
    assert text_bytes(metadata) < 2_000
    # The text block is the structured content, compact: the same facts, once.
    assert json.loads(retrieved.content[0].text) == retrieved.structured_content  # type: ignore[union-attr]
    assert "\n" not in retrieved.content[0].text  # type: ignore[union-attr]
    saved = retrieved.structured_content
    assert saved is not None and saved["file_count"] == 150 and len(saved["files"]) == 5
    manifest = json.loads(Path(saved["manifest"]).read_text())
    assert len(manifest["files"]) == 150 == len(files)
    assert all((Path(saved["directory"]) / name).is_file() for name in saved["files"])


async def test_a_ten_series_overview_fits(orthanc_config: Config, tmp_path: Path) -> None:
    """Under 3 KB of text for ten series and two reports; the contact sheet of ten noisy CT slices under
    30 KB. The UIDs are full length (64 characters), the worst case."""
    import pydicom

    from tests.support.imaging import ct_dataset, phantom_hu, save
    from tests.support.reports import basic_text_sr, encapsulated_pdf

    def long_uid(seed: int) -> str:
        return ("1.2.826.0.1.3680043.8.498." + "1" * 64)[:60] + f"{seed:04d}"

    study = long_uid(0)
    for series in range(8):
        for number in (1, 2):
            ds = ct_dataset(
                phantom_hu(256, seed=series * 2 + number),
                study_uid=study,
                series_uid=long_uid(100 + series),
                SeriesNumber=series + 1,
                InstanceNumber=number,
                SeriesDescription=f"CHEST {series} 1.25 MM LUNG",
                BodyPartExamined="CHEST",
            )
            first = save(ds, tmp_path / "study")
    basic_text_sr(tmp_path / "study", pydicom.dcmread(first.path))
    encapsulated_pdf(tmp_path / "study", study_uid=study)
    async with Client(build_server(orthanc_config)) as client:
        await client.call_tool("store_instances", {"paths": [str(tmp_path / "study")]})
        plain = await client.call_tool("get_study_overview", {"study_uid": study})
        shown = await client.call_tool("get_study_overview", {"study_uid": study, "show": True})
    assert len(plain.structured_content["series"]) == 10  # type: ignore[index]
    assert len(plain.structured_content["reports"]) == 2  # type: ignore[index]
    assert text_bytes(plain) < 3_000
    assert text_bytes(shown) < 3_000 + len(shown.structured_content["contact_sheet"])  # type: ignore[index]
    assert len(Path(shown.structured_content["contact_sheet"]).read_bytes()) <= 30_000  # type: ignore[index]
