"""Config, validation and query building: everything decided before a request leaves."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomweb_mcp import (
    AuthMode,
    Config,
    ConfigError,
    InvalidInputError,
    ServerKind,
    normalize_date_range,
    resolve_attribute,
    validate_uid,
)
from dicomweb_mcp.dicom.dicomjson import element_value, sequence_items
from dicomweb_mcp.dicomweb.query import build_query, encode_query
from dicomweb_mcp.dicomweb.servers import guess_kind_from_url, orthanc_rest_root, profile_for
from dicomweb_mcp.errors import error_for_status

AZURE_URL = "https://ws-svc.dicom.azurehealthcareapis.com/v2"


def test_config_from_env_defaults_and_secrets_hidden(tmp_path: Path) -> None:
    config = Config.from_env(
        {
            "DICOMWEB_URL": "http://user:pw@localhost:8042/dicom-web/",
            "DICOMWEB_AUTH": "basic",
            "DICOMWEB_USERNAME": "alice",
            "DICOMWEB_PASSWORD": "s3cret-Pa55",
            "DICOMWEB_DOWNLOAD_DIR": str(tmp_path),
            "DICOMWEB_TIMEOUT": "12.5",
        }
    )
    server = config.server
    assert server.auth is AuthMode.BASIC and server.timeout == 12.5 and config.download_dir == tmp_path
    assert server.url == "http://user:pw@localhost:8042/dicom-web"
    text = repr(config) + str(config) + repr(server)
    assert "s3cret-Pa55" not in text and "pw@" not in text and "***" in text


def test_config_azure_defaults() -> None:
    server = Config.from_env({"DICOMWEB_URL": AZURE_URL, "DICOMWEB_PARTITION": "p1"}).server
    assert server.auth is AuthMode.AZURE
    assert server.azure_scope == "https://dicom.healthcareapis.azure.com/.default"
    assert Config.from_env({"DICOMWEB_URL": "http://localhost/dicom-web"}).server.auth is AuthMode.NONE


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "DICOMWEB_URL is not set"),
        ({"DICOMWEB_URL": "localhost:8042"}, "not an http"),
        (
            {"DICOMWEB_URL": "http://h/x", "DICOMWEB_AUTH": "kerberos"},
            "DICOMWEB_AUTH 'kerberos' is not one of",
        ),
        ({"DICOMWEB_URL": "http://h/x", "DICOMWEB_AUTH": "basic"}, "needs DICOMWEB_USERNAME"),
        ({"DICOMWEB_URL": "http://h/x", "DICOMWEB_AUTH": "bearer"}, "needs DICOMWEB_TOKEN"),
        ({"DICOMWEB_URL": "http://h/x", "DICOMWEB_TIMEOUT": "soon"}, "DICOMWEB_TIMEOUT"),
        ({"DICOMWEB_URL": "http://h/x", "DICOMWEB_TIMEOUT": "0"}, "positive"),
        ({"DICOMWEB_URL": "http://h/x", "DICOMWEB_SERVER_KIND": "pacs"}, "DICOMWEB_SERVER_KIND"),
        ({"DICOMWEB_URL": "http://h/x", "DICOMWEB_READ_ONLY": "maybe"}, "not a boolean"),
    ],
)
def test_config_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env(env)


@pytest.mark.parametrize(
    "uid", ["1.2.3", "1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420", "0"]
)
def test_valid_uids(uid: str) -> None:
    assert validate_uid(uid) == uid


@pytest.mark.parametrize(
    "uid", ["", "1.2.", ".1.2", "1..2", "1.2.a", "../../etc", "1.2 3", "1" * 65, "1.2/3"]
)
def test_invalid_uids(uid: str) -> None:
    with pytest.raises(InvalidInputError, match="not a valid DICOM UID"):
        validate_uid(uid, "study_uid")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("20200922", "20200922"),
        ("2020-09-22", "20200922"),
        ("20200101-20201231", "20200101-20201231"),
        ("2020-01-01-2020-12-31", "20200101-20201231"),
        ("2020-01-01 - 2020-12-31", "20200101-20201231"),
        ("20200101-", "20200101-"),
        ("-20201231", "-20201231"),
    ],
)
def test_date_ranges(given: str, expected: str) -> None:
    assert normalize_date_range(given) == expected


@pytest.mark.parametrize("given", ["2020", "20201301", "2020-02-30", "yesterday", "-", "20200101-20201301"])
def test_bad_dates(given: str) -> None:
    with pytest.raises(InvalidInputError, match="YYYYMMDD"):
        normalize_date_range(given, "study_date")


def test_attributes_by_keyword_or_tag() -> None:
    assert resolve_attribute("PatientName").tag == "00100010"
    assert resolve_attribute("00100010").keyword == "PatientName"
    assert resolve_attribute("(0010,0020)").keyword == "PatientID"
    assert resolve_attribute("0008,0020").vr == "DA"
    assert resolve_attribute("00091001").keyword == ""  # private tags are legal query keys
    with pytest.raises(InvalidInputError, match="Did you mean 'PatientName'"):
        resolve_attribute("patientname")


def test_dicom_json_elements_by_keyword_or_key() -> None:
    item = {"00081155": {"vr": "UI", "Value": ["1.2.3"]}}
    dataset = {"00081199": {"vr": "SQ", "Value": [item]}, "00281050": {"vr": "DS", "Value": [40, 400]}}
    assert sequence_items(dataset, "ReferencedSOPSequence") == sequence_items(dataset, "00081199") == [item]
    assert element_value(item, "ReferencedSOPInstanceUID") == element_value(item, "00081155") == "1.2.3"
    assert element_value(dataset, "WindowCenter") == [40, 400]
    assert element_value(dataset, "WindowWidth") is None
    with pytest.raises(InvalidInputError, match="not a DICOM keyword"):
        element_value(dataset, "WindowCentre")


def test_query_encoding_standard_and_orthanc() -> None:
    match = {"PatientName": "Anony Mous^*", "StudyDate": "2020-01-01-2020-12-31", "00100020": "ID1"}
    standard = build_query(match, include_fields=["StudyDescription"], limit=5)
    assert encode_query(standard, profile_for(ServerKind.GENERIC)) == (
        "PatientName=Anony%20Mous%5E*&StudyDate=20200101-20201231&PatientID=ID1"
        "&includefield=StudyDescription&limit=5",
        [],
    )
    quoted = build_query({"PatientName": 'O"Brien<>*'})
    encoded, warnings = encode_query(quoted, profile_for(ServerKind.ORTHANC))
    assert encoded == "PatientName=O?Brien??*" and warnings
    encoded, warnings = encode_query(build_query(match), profile_for(ServerKind.ORTHANC))
    assert encoded.startswith("PatientName=Anony?Mous^*&StudyDate=20200101-20201231")
    assert any("Anony?Mous^*" in w for w in warnings)


def test_query_uid_lists_limits_and_azure_cap() -> None:
    query = build_query({"StudyInstanceUID": ["1.2.3", "1.2.4"]}, fuzzy=True, limit=500, offset=10)
    assert query.pairs == (
        ("StudyInstanceUID", "1.2.3,1.2.4"),
        ("fuzzymatching", "true"),
        ("limit", "500"),
        ("offset", "10"),
    )
    assert encode_query(query, profile_for(ServerKind.GENERIC))[0].startswith("StudyInstanceUID=1.2.3,1.2.4&")
    with pytest.raises(InvalidInputError, match="one UID at a time"):  # Azure has no UID lists
        encode_query(query, profile_for(ServerKind.AZURE))
    capped = build_query({"StudyInstanceUID": "1.2.3"}, limit=500, offset=10)
    encoded, warnings = encode_query(capped, profile_for(ServerKind.AZURE))
    assert encoded.endswith("&limit=200&offset=10")
    assert "maximum of 200" in warnings[0]
    for bad in ({"limit": 0}, {"offset": -1}):
        with pytest.raises(InvalidInputError):
            build_query(None, **bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="UID"):
        build_query({"SeriesInstanceUID": "1.2.x"})


def test_server_kinds_from_urls() -> None:
    assert guess_kind_from_url(AZURE_URL) is ServerKind.AZURE
    assert (
        guess_kind_from_url(
            "https://healthcare.googleapis.com/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"
        )
        is ServerKind.GOOGLE
    )
    assert guess_kind_from_url("http://pacs:8080/dcm4chee-arc/aets/DCM4CHEE/rs") is ServerKind.DCM4CHEE
    assert guess_kind_from_url("http://localhost:8042/dicom-web") is None
    assert orthanc_rest_root("http://localhost:8042/dicom-web/") == "http://localhost:8042"
    assert orthanc_rest_root("http://localhost:8042/orthanc/dicom-web") == "http://localhost:8042/orthanc"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, b'{"HttpError":"Bad Request","Message":"Bad file format"}', "Server said: Bad file format."),
        (401, b"", "DICOMWEB_AUTH"),
        (403, b"Forbidden", "role"),
        (404, b"The specified study cannot be found.", "search first"),
        (406, b"", "transfer_syntax='*'"),
        (409, b"", "conflicts"),
        (413, b"", "fewer files"),
        (415, b"", "multipart"),
        (429, b"", "throttled"),
        (503, b"", "throttled"),
        (500, b"<html>" + b"x" * 2000 + b"</html>", "server failed internally"),
    ],
)
def test_status_errors_say_what_to_do(status: int, body: bytes, expected: str) -> None:
    error = error_for_status("Search for studies", status, "/dicom-web/studies", body)
    message = str(error)
    assert message.startswith(f"Search for studies failed: HTTP {status} at /dicom-web/studies.")
    assert expected in message
    assert len(message) < 900
