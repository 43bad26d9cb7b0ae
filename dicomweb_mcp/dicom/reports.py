"""A report instance as text: Structured Reports through ``sr``, encapsulated PDFs through pypdf.

Takes a pydicom Dataset already read; pypdf is imported only when a PDF is read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import DicomWebError, InvalidInputError
from .sopclass import ReportKind, report_kind, sop_class_name
from .sr import concept_name, observer_name, sr_text

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["NotAReportError", "Report", "ReportUnreadableError", "not_a_report", "report_of"]


class NotAReportError(InvalidInputError):
    """The instance is not a Structured Report or an encapsulated PDF."""


class ReportUnreadableError(DicomWebError):
    """The report's document could not be read (a damaged or encrypted PDF)."""


@dataclass(frozen=True, slots=True)
class Report:
    kind: ReportKind
    title: str
    text: str
    completion_flag: str | None = None
    verification_flag: str | None = None
    observer: str | None = None
    content_date: str | None = None


def not_a_report(sop_class_uid: str | None) -> NotAReportError:
    return NotAReportError(
        f"This instance is {sop_class_name(sop_class_uid)}, not a report: read_report reads Structured "
        "Reports (SR) and encapsulated PDFs. Look at images with retrieve_rendered; find the study's "
        "reports with get_study_overview."
    )


def _text(dataset: Dataset, keyword: str) -> str | None:
    value = str(dataset.get(keyword, "") or "").strip()
    return value or None


def report_of(dataset: Dataset) -> Report:
    """The report in ``dataset``; ``NotAReportError`` when its SOP class is not one."""
    sop_class = str(dataset.get("SOPClassUID", ""))
    kind = report_kind(sop_class)
    if kind is None:
        raise not_a_report(sop_class)
    if kind == "sr":
        return Report(
            kind="sr",
            title=concept_name(dataset) or _text(dataset, "SeriesDescription") or "Structured Report",
            text=sr_text(dataset),
            completion_flag=_text(dataset, "CompletionFlag"),
            verification_flag=_text(dataset, "VerificationFlag"),
            observer=observer_name(dataset) or None,
            content_date=_text(dataset, "ContentDate"),
        )
    document = bytes(dataset.get("EncapsulatedDocument") or b"")
    length = dataset.get("EncapsulatedDocumentLength")
    if length:  # the element is padded to an even length
        document = document[: int(length)]
    return Report(
        kind="pdf",
        title=_text(dataset, "DocumentTitle") or concept_name(dataset) or "PDF report",
        text=pdf_text(document),
        content_date=_text(dataset, "ContentDate"),
    )


def pdf_text(document: bytes) -> str:
    """The text of every page, pages separated by a marker when there are several."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(document))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ReportUnreadableError(
                "The PDF report is encrypted with a password: its text cannot be read."
            )
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise ReportUnreadableError(
            f"The encapsulated PDF could not be read ({exc}); download the instance with retrieve_instances "
            "to open it in a PDF viewer."
        ) from None
    if len(pages) == 1:
        return pages[0]
    return "\n\n".join(f"[page {number}]\n{text}" for number, text in enumerate(pages, 1))
