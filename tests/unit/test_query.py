"""dicomweb/query.py: QIDO queries validated without a server, then encoded as each server kind reads them."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from dicomweb_mcp.config import ServerKind
from dicomweb_mcp.dicomweb.query import build_query, encode_query
from dicomweb_mcp.dicomweb.servers import profile_for
from dicomweb_mcp.errors import InvalidInputError

GENERIC = profile_for(ServerKind.GENERIC)
ORTHANC = profile_for(ServerKind.ORTHANC)
AZURE = profile_for(ServerKind.AZURE)


# --- build_query: refusals before any request ---------------------------------------------------------


@pytest.mark.parametrize("name", ["PatientNam", "Patient Name", "0010001", "(0010,00GG)", "StudyUID"])
def test_unknown_keywords_are_refused(name: str) -> None:
    with pytest.raises(InvalidInputError, match="is not a DICOM keyword or tag"):
        build_query({name: "x"})


@pytest.mark.parametrize("value", ["2020", "20201301", "2021-02-29", "last week", "20200101-2020"])
def test_bad_dates_are_refused_naming_the_attribute(value: str) -> None:
    with pytest.raises(InvalidInputError, match="StudyDate"):
        build_query({"StudyDate": value})


@pytest.mark.parametrize("value", ["25", "1261", "12:30:61", "noon", "-"])
def test_bad_times_are_refused(value: str) -> None:
    with pytest.raises(InvalidInputError, match="not a time or time range"):
        build_query({"StudyTime": value})


@pytest.mark.parametrize("value", ["1.2.x", "1..2", "1.2/../3", "1" * 65, ["1.2.3", "bad"], "1.2.3,abc"])
def test_bad_uids_are_refused_even_in_lists(value: Any) -> None:
    with pytest.raises(InvalidInputError, match="not a valid DICOM UID"):
        build_query({"SeriesInstanceUID": value})


@pytest.mark.parametrize("control", ["\n", "\t", "\x00", "\x1b"])
def test_control_characters_are_refused(control: str) -> None:
    with pytest.raises(InvalidInputError, match="control characters"):
        build_query({"PatientID": f"ab{control}cd"})


def test_a_boolean_is_not_a_match_value() -> None:
    with pytest.raises(InvalidInputError, match="true/false"):
        build_query({"NumberOfFrames": True})


@pytest.mark.parametrize("limit", [0, -1, True, 2.5, "10"])
def test_bad_limits_are_refused(limit: Any) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        build_query(None, limit=limit)


@pytest.mark.parametrize("offset", [-1, False, 1.0, "3"])
def test_bad_offsets_are_refused(offset: Any) -> None:
    with pytest.raises(InvalidInputError, match="offset"):
        build_query(None, offset=offset)


# --- build_query: what it keeps ------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 200, 10_000])
def test_limits_of_one_and_more_are_kept(limit: int) -> None:
    assert list(build_query(None, limit=limit).pairs) == [("limit", str(limit))]


def test_offset_zero_is_left_out_and_others_kept() -> None:
    assert list(build_query(None, offset=0).pairs) == []
    assert list(build_query(None, offset=7).pairs) == [("offset", "7")]


@pytest.mark.parametrize("name", ["PatientID", "00100020", "(0010,0020)", "0010,0020", " ( 0010 , 0020 ) "])
def test_tags_and_keywords_become_the_keyword(name: str) -> None:
    query = build_query({name: "X"})
    assert list(query.pairs) == [("PatientID", "X")] and query.vrs == {"PatientID": "LO"}


def test_a_keyword_in_the_wrong_case_is_refused_with_the_right_spelling() -> None:
    with pytest.raises(InvalidInputError, match="Did you mean 'PatientID'"):
        build_query({"patientid": "X"})


def test_a_private_tag_goes_as_its_tag() -> None:
    query = build_query({"00091001": "v"})
    assert list(query.pairs) == [("00091001", "v")] and query.vrs == {"00091001": ""}


@pytest.mark.parametrize(("given", "sent"), [("2020-09-22", "20200922"), ("2020-01-01-", "20200101-")])
def test_dates_are_sent_in_dicom_form(given: str, sent: str) -> None:
    assert list(build_query({"StudyDate": given}).pairs) == [("StudyDate", sent)]


def test_empty_value_is_universal_matching_and_ints_are_text() -> None:
    query = build_query({"PatientName": "   ", "NumberOfFrames": 3})
    assert list(query.pairs) == [("PatientName", ""), ("NumberOfFrames", "3")]


def test_uid_lists_from_a_list_or_commas_agree() -> None:
    uids = ["1.2.3", "1.2.4"]
    from_list = build_query({"StudyInstanceUID": uids}).pairs
    from_text = build_query({"StudyInstanceUID": " , ".join(uids)}).pairs
    assert from_list == from_text == (("StudyInstanceUID", ",".join(uids)),)


def test_include_fields_resolve_and_all_is_kept_as_all() -> None:
    query = build_query(None, include_fields=["00081030", " ALL ", "Modality"])
    assert list(query.pairs) == [
        ("includefield", "StudyDescription"),
        ("includefield", "all"),
        ("includefield", "Modality"),
    ]


def test_unknown_include_field_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="Did you mean"):
        build_query(None, include_fields=["StudyDescriptio"])


# --- encode_query per server kind -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["Smith^John", "O'Brien & Co", "100%", "a=b;c", "Müller"])
def test_standard_servers_get_percent_encoded_values(value: str) -> None:
    query = build_query({"PatientName": value})
    text, warnings = encode_query(query, GENERIC)
    assert text == f"PatientName={quote(value, safe='*?,')}"
    assert warnings == []


@pytest.mark.parametrize("unsendable", [*' "#%&;<=>', "é", "中"])
def test_orthanc_gets_raw_values_with_unsendable_characters_as_question_marks(unsendable: str) -> None:
    query = build_query({"PatientName": f"A{unsendable}B*"})
    text, warnings = encode_query(query, ORTHANC)
    assert text == "PatientName=A?B*"
    assert len(warnings) == 1 and "'A?B*'" in warnings[0]


def test_orthanc_sends_carets_wildcards_and_commas_unescaped_without_warning() -> None:
    query = build_query({"PatientName": "Doe^J*n?", "StudyInstanceUID": ["1.2", "1.3"]})
    text, warnings = encode_query(query, ORTHANC)
    assert text == "PatientName=Doe^J*n?&StudyInstanceUID=1.2,1.3"
    assert warnings == []


def test_orthanc_ignores_includefield_all_and_fuzzy_matching_and_says_so() -> None:
    query = build_query(None, include_fields=["all"], fuzzy=True)
    text, warnings = encode_query(query, ORTHANC)
    assert text == "includefield=all&fuzzymatching=true"
    assert len(warnings) == 2
    assert "includefield=all" in warnings[0] and "fuzzy" in warnings[1]


@pytest.mark.parametrize(
    "kind", [ServerKind.GENERIC, ServerKind.AZURE, ServerKind.DCM4CHEE, ServerKind.GOOGLE]
)
def test_other_servers_honour_includefield_all_silently(kind: ServerKind) -> None:
    query = build_query(None, include_fields=["all"])
    text, warnings = encode_query(query, profile_for(kind))
    assert text == "includefield=all" and warnings == []


@pytest.mark.parametrize(
    ("limit", "sent", "warned"), [(199, 199, False), (200, 200, False), (201, 200, True)]
)
def test_azure_caps_the_limit_at_its_maximum(limit: int, sent: int, warned: bool) -> None:
    cap = AZURE.qido_limit_cap
    assert cap == 200  # the parameters above are chosen around this cap
    query = build_query(None, limit=limit)
    text, warnings = encode_query(query, AZURE)
    assert text == f"limit={sent}"
    assert bool(warnings) is warned
    if warned:
        assert f"maximum of {cap}" in warnings[0]


def test_a_limit_over_azures_cap_goes_unchanged_elsewhere() -> None:
    assert encode_query(build_query(None, limit=5000), GENERIC)[0] == "limit=5000"


def test_azure_refuses_uid_lists() -> None:
    with pytest.raises(InvalidInputError, match="one UID at a time"):
        encode_query(build_query({"SOPInstanceUID": "1.2.3,1.2.4"}), AZURE)[0]


@pytest.mark.parametrize(("given", "prefix"), [("Smith*", "Smith"), ("Smith^Jo***", "Smith^Jo")])
def test_azure_turns_a_name_prefix_into_fuzzy_matching(given: str, prefix: str) -> None:
    query = build_query({"PatientName": given})
    text, warnings = encode_query(query, AZURE)
    assert text == f"PatientName={quote(prefix, safe='*?,')}&fuzzymatching=true"
    assert "fuzzy matching" in warnings[0] and repr(prefix) in warnings[0]


def test_azure_adds_fuzzy_matching_once_for_two_name_prefixes() -> None:
    query = build_query({"PatientName": "Sm*", "ReferringPhysicianName": "Wa*"}, fuzzy=True)
    text, warnings = encode_query(query, AZURE)
    assert text.count("fuzzymatching=true") == 1
    assert len(warnings) == 2


@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [
        ("PatientName", "Sm?th", "name prefix"),
        ("PatientName", "*", "name prefix"),
        ("PatientName", "S*m*", "name prefix"),
        ("PatientID", "ID*", "exact value."),
        ("StudyDescription", "?", "exact value."),
    ],
)
def test_azure_refuses_other_wildcards(name: str, value: str, hint: str) -> None:
    with pytest.raises(InvalidInputError, match="no \\* or \\? wildcards") as caught:
        encode_query(build_query({name: value}), AZURE)[0]
    assert hint in str(caught.value)


@pytest.mark.parametrize("kind", [ServerKind.GENERIC, ServerKind.ORTHANC, ServerKind.DCM4CHEE])
def test_wildcard_servers_keep_wildcards(kind: ServerKind) -> None:
    query = build_query({"PatientID": "ID*"})
    text, warnings = encode_query(query, profile_for(kind))
    assert text == "PatientID=ID*" and warnings == []


def test_pairs_keep_their_order_in_the_query_string() -> None:
    query = build_query(
        {"Modality": "CT", "StudyDate": "20200101-"}, include_fields=["StudyDescription"], limit=3, offset=6
    )
    assert encode_query(query, GENERIC)[0] == (
        "Modality=CT&StudyDate=20200101-&includefield=StudyDescription&limit=3&offset=6"
    )


def test_auto_has_no_profile() -> None:
    with pytest.raises(ValueError, match="AUTO"):
        profile_for(ServerKind.AUTO)
