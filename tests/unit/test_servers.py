"""dicomweb/servers.py: what a URL gives away about its server, and hints for a URL that misses the root."""

from __future__ import annotations

import pytest

from dicomweb_mcp.config import ServerKind
from dicomweb_mcp.dicomweb.servers import guess_kind_from_url, orthanc_rest_root, profile_for, root_hint


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://ws-svc.dicom.azurehealthcareapis.com/v2", ServerKind.AZURE),
        ("https://WS-SVC.DICOM.AZUREHEALTHCAREAPIS.COM/v1", ServerKind.AZURE),
        (
            "https://healthcare.googleapis.com/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb",
            ServerKind.GOOGLE,
        ),
        ("https://proxy.example/v1/x/DICOMSTORES/s/dicomWeb", ServerKind.GOOGLE),
        ("http://pacs:8080/dcm4chee-arc/aets/DCM4CHEE/rs", ServerKind.DCM4CHEE),
        ("http://localhost:8042/dicom-web", None),
        # A look-alike host is not Azure: only the real suffix counts.
        ("https://dicom.azurehealthcareapis.com.evil.example/v2", None),
        ("http://pacs/rs?x=/dcm4chee-arc/", None),  # the query string is not the path
    ],
)
def test_kind_from_url(url: str, kind: ServerKind | None) -> None:
    assert guess_kind_from_url(url) is kind


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("http://h:8042/dicom-web", "http://h:8042"),
        ("https://h/pacs/orthanc/dicom-web//", "https://h/pacs/orthanc"),
        ("http://user@h:1/a/b", "http://user@h:1/a"),
    ],
)
def test_orthanc_rest_root_drops_the_last_segment(url: str, root: str) -> None:
    assert orthanc_rest_root(url) == root


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("https://ws-svc.dicom.azurehealthcareapis.com", "/v2 (or /v1)"),
        ("https://ws-svc.dicom.azurehealthcareapis.com/", "no API version"),
        ("http://pacs.example:8080", "has no path"),
        ("http://pacs.example/", "/dcm4chee-arc/aets/AET/rs"),
        ("http://localhost:8042/orthanc", "try DICOMWEB_URL=http://localhost:8042/dicom-web"),
    ],
)
def test_root_hints(url: str, hint: str) -> None:
    found = root_hint(url)
    assert found is not None and hint in found


@pytest.mark.parametrize(
    "url",
    [
        "https://ws-svc.dicom.azurehealthcareapis.com/v2",
        "http://localhost:8042/dicom-web",
        "http://localhost:8042/dicom-web/",
        "http://pacs:8080/dcm4chee-arc/aets/DCM4CHEE/rs",
    ],
)
def test_right_looking_urls_get_no_hint(url: str) -> None:
    assert root_hint(url) is None


def test_root_hint_never_repeats_credentials() -> None:
    hint = root_hint("http://alice:s3cret@pacs.example")
    assert hint is not None and "s3cret" not in hint and "alice" not in hint


@pytest.mark.parametrize("kind", [k for k in ServerKind if k is not ServerKind.AUTO])
def test_every_kind_has_its_own_profile(kind: ServerKind) -> None:
    assert profile_for(kind).kind is kind
