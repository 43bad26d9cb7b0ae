"""read_report: a Structured Report or an encapsulated PDF as text.

The instance's SOP class is checked with a search first, so a CT slice is refused by name without being
downloaded. The whole text is saved beside the instance; the result carries at most ``MAX_REPORT_TEXT``
bytes of it.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from ..config import Config
from ..dicom.dicomjson import element_value
from ..dicom.reports import Report, not_a_report, report_of
from ..dicom.sopclass import report_kind
from ..dicomweb.client import DicomWebClient
from ..errors import InvalidInputError, ProtocolError
from ..files.store import FileStore, uid_path
from .fetch import instance_file
from .results import MAX_REPORT_TEXT, ReadReportResult

__all__ = ["Reports", "cut_text"]


def _read(path: Path) -> Report:
    import pydicom

    try:
        dataset = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many kinds for a damaged file
        raise ProtocolError(f"The server sent a report that does not parse as DICOM ({exc}).") from None
    return report_of(dataset)


def cut_text(text: str, limit: int = MAX_REPORT_TEXT) -> tuple[str, bool]:
    """``text`` within ``limit`` UTF-8 bytes, cut at a line end where one is near, with a closing note."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text, False
    note = f"\n[… cut here: {len(data):,} bytes in all; text_file has the whole report]"
    head = data[: limit - len(note.encode("utf-8"))].decode("utf-8", errors="ignore")
    line_end = head.rfind("\n")
    if line_end > len(head) * 0.8:
        head = head[:line_end]
    return head + note, True


class Reports:
    client: DicomWebClient
    store: FileStore
    config: Config

    async def read_report(self, *, study_uid: str, series_uid: str, instance_uid: str) -> ReadReportResult:
        found = await self.client.search_instances(
            {"SOPInstanceUID": instance_uid}, study_uid=study_uid, series_uid=series_uid, limit=1
        )
        if not found.datasets:
            raise InvalidInputError(
                f"There is no instance {instance_uid} in series {series_uid} of study {study_uid}: list the "
                "study's reports with get_study_overview."
            )
        sop_class = element_value(found.datasets[0], "00080016")
        if sop_class and report_kind(sop_class) is None:
            raise not_a_report(sop_class)
        async with instance_file(self.client, self.store, study_uid, series_uid, instance_uid) as path:
            report = await anyio.to_thread.run_sync(_read, path)
        text_file = uid_path(self.store.directory(), study_uid, series_uid, instance_uid, ".report.txt")
        await anyio.to_thread.run_sync(self.store.write_bytes, text_file, report.text.encode("utf-8"))
        text, truncated = cut_text(report.text)
        return ReadReportResult(
            kind=report.kind,
            title=report.title,
            text=text,
            text_file=str(text_file),
            truncated=truncated or None,
            completion_flag=report.completion_flag,
            verification_flag=report.verification_flag,
            observer=report.observer,
            content_date=report.content_date,
        )
