"""dicom/reference.py: a study, series or instance, validated once, as a DICOMweb path and a file name."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomweb_mcp.dicom.reference import Reference
from dicomweb_mcp.errors import InvalidInputError

STUDY, SERIES, INSTANCE = "1.2.3", "1.2.3.4", "1.2.3.4.5"


def test_each_level_has_its_path() -> None:
    assert (Reference(STUDY).level, Reference(STUDY).path) == ("study", f"/studies/{STUDY}")
    series = Reference(STUDY, SERIES)
    assert (series.level, series.path) == ("series", f"/studies/{STUDY}/series/{SERIES}")
    instance = Reference(STUDY, SERIES, INSTANCE)
    assert instance.level == "instance"
    assert instance.path == f"/studies/{STUDY}/series/{SERIES}/instances/{INSTANCE}"
    assert str(instance) == f"instance {INSTANCE}"


def test_an_instance_without_its_series_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="instance_uid needs series_uid"):
        Reference(STUDY, None, INSTANCE)


@pytest.mark.parametrize(
    ("study", "series", "instance", "named"),
    [
        ("../etc", None, None, "study_uid"),
        ("", None, None, "study_uid"),
        (STUDY, "1.2/3", None, "series_uid"),
        (STUDY, SERIES, "%2e%2e", "instance_uid"),
        (STUDY, SERIES, "1" * 65, "instance_uid"),
    ],
)
def test_a_uid_that_could_escape_a_path_is_refused(
    study: str, series: str | None, instance: str | None, named: str
) -> None:
    with pytest.raises(InvalidInputError, match=f"{named} .* is not a valid DICOM UID"):
        Reference(study, series, instance)


def test_files_are_named_by_uids_under_the_root(tmp_path: Path) -> None:
    assert Reference(STUDY).file(tmp_path) == tmp_path / STUDY
    assert (
        Reference(STUDY, SERIES, INSTANCE).file(tmp_path, ".dcm")
        == tmp_path / STUDY / SERIES / f"{INSTANCE}.dcm"
    )
    assert Reference(STUDY).level_file(tmp_path, "manifest") == tmp_path / STUDY / "manifest.json"
    assert (
        Reference(STUDY, SERIES).level_file(tmp_path, "metadata")
        == tmp_path / STUDY / SERIES / "metadata.json"
    )
    instance = Reference(STUDY, SERIES, INSTANCE).level_file(tmp_path, "metadata")
    assert instance == tmp_path / STUDY / SERIES / f"{INSTANCE}.metadata.json"


def test_a_search_scope_is_a_study_or_a_series_of_one() -> None:
    assert Reference.scope(None) is None
    assert Reference.scope(STUDY) == Reference(STUDY)
    assert Reference.scope(STUDY, SERIES) == Reference(STUDY, SERIES)
    with pytest.raises(InvalidInputError, match="only together with study_uid"):
        Reference.scope(None, SERIES)


def test_references_compare_and_hash_by_their_uids() -> None:
    assert Reference(STUDY, SERIES) == Reference(STUDY, SERIES)
    assert len({Reference(STUDY), Reference(STUDY), Reference(STUDY, SERIES)}) == 2
