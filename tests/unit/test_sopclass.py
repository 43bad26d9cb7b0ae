"""dicom/sopclass.py: which SOP classes are reports, and how a SOP class is named."""

from __future__ import annotations

import pytest
from pydicom.uid import (
    UID,
    BasicTextSRStorage,
    ComprehensiveSRStorage,
    CTImageStorage,
    EncapsulatedPDFStorage,
)

from dicomweb_mcp.dicom.sopclass import report_kind, sop_class_name


@pytest.mark.parametrize(
    ("uid", "kind"),
    [
        (BasicTextSRStorage, "sr"),
        (ComprehensiveSRStorage, "sr"),
        ("1.2.840.10008.5.1.4.1.1.88.59", "sr"),  # Key Object Selection lies under the SR root
        (EncapsulatedPDFStorage, "pdf"),
        (CTImageStorage, None),
        ("1.2.840.10008.5.1.4.1.1.88", None),  # the root itself is no storage class
        ("1.2.840.10008.5.1.4.1.1.104.2", None),  # encapsulated CDA, not a PDF
        ("", None),
        (None, None),
    ],
)
def test_report_kind(uid: str | None, kind: str | None) -> None:
    assert report_kind(uid) == kind


def test_a_known_class_is_named_with_its_uid() -> None:
    assert sop_class_name(CTImageStorage) == f"{UID(CTImageStorage).name} ({CTImageStorage})"
    assert "CT Image Storage" in sop_class_name(CTImageStorage)


@pytest.mark.parametrize(
    ("uid", "name"),
    [("1.2.3.4.5", "1.2.3.4.5"), (None, "an unknown SOP class"), ("", "an unknown SOP class")],
)
def test_unknown_classes_are_named_plainly(uid: str | None, name: str) -> None:
    assert sop_class_name(uid) == name
