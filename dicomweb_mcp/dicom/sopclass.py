"""SOP classes by what an agent can do with them: look at the picture, or read the report."""

from __future__ import annotations

from typing import Literal

__all__ = ["ENCAPSULATED_PDF", "ReportKind", "report_kind", "sop_class_name"]

ReportKind = Literal["sr", "pdf"]

# Every Structured Report storage class (Basic Text, Enhanced, Comprehensive, Comprehensive 3D, Extensible,
# Key Object Selection, dose and CAD reports...) lies under this root (PS3.4 B.5).
_SR_ROOT = "1.2.840.10008.5.1.4.1.1.88."
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"


def report_kind(sop_class_uid: str | None) -> ReportKind | None:
    """``sr``, ``pdf``, or None for a SOP class that is not a report."""
    if not sop_class_uid:
        return None
    if sop_class_uid.startswith(_SR_ROOT):
        return "sr"
    return "pdf" if sop_class_uid == ENCAPSULATED_PDF else None


def sop_class_name(sop_class_uid: str | None) -> str:
    """``CT Image Storage (1.2.840.10008.5.1.4.1.1.2)``, or the UID alone when the dictionary lacks it."""
    if not sop_class_uid:
        return "an unknown SOP class"
    from pydicom.uid import UID

    name = UID(sop_class_uid).name
    return f"{name} ({sop_class_uid})" if name and name != sop_class_uid else sop_class_uid
