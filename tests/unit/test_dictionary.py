"""dicom/dictionary.py: one Attribute from any spelling of a keyword or tag."""

from __future__ import annotations

import pytest
from pydicom import datadict

from dicomweb_mcp.dicom.dictionary import resolve_attribute, tag_of
from dicomweb_mcp.errors import InvalidInputError


@pytest.mark.parametrize(
    "keyword", ["PatientName", "StudyInstanceUID", "Rows", "PixelSpacing", "ContentSequence"]
)
def test_keywords_resolve_to_the_dictionarys_tag_and_vr(keyword: str) -> None:
    tag = datadict.tag_for_keyword(keyword)
    assert tag is not None
    attribute = resolve_attribute(keyword)
    assert attribute.tag == f"{tag:08X}" and attribute.keyword == keyword
    assert attribute.vr == datadict.dictionary_VR(tag)


@pytest.mark.parametrize("spelling", ["0020000d", "0020000D", "(0020,000D)", "0020,000d", "( 0020 , 000D )"])
def test_tag_spellings_agree(spelling: str) -> None:
    attribute = resolve_attribute(spelling)
    assert attribute == resolve_attribute("StudyInstanceUID")
    assert attribute.tag == "0020000D"  # DICOM JSON keys are upper-case hex


def test_unknown_but_well_formed_tags_are_kept_without_keyword_or_vr() -> None:
    attribute = resolve_attribute("(0029,1010)")
    assert (attribute.tag, attribute.keyword, attribute.vr) == ("00291010", "", "")


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [("StudyInstanceUid", "StudyInstanceUID"), ("PatientsName", "PatientName"), ("Modalty", "Modality")],
)
def test_close_misspellings_are_suggested(typo: str, suggestion: str) -> None:
    with pytest.raises(InvalidInputError, match=f"Did you mean '{suggestion}'"):
        resolve_attribute(typo)


def test_nonsense_gets_no_suggestion() -> None:
    with pytest.raises(InvalidInputError) as caught:
        resolve_attribute("Zzzqqqxx")
    assert "Did you mean" not in str(caught.value) and "'Zzzqqqxx'" in str(caught.value)


def test_tag_of_matches_resolve_attribute() -> None:
    assert tag_of("SOPClassUID") == resolve_attribute("00080016").tag
