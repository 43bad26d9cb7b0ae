"""The operator's pseudonyms for de-identified copies, and de-identifying one file.

Replacement values are derived from a secret key kept under the download directory (``.deidentify/key``):
the same source UID gives the same new UID (``2.25.`` and 128 bits of HMAC-SHA256) in every call, every
process, every series, without a lookup, and nobody without the key can go back. The key also gives each
patient one date shift and one pseudonym. Every replacement is appended to ``mapping.jsonl`` beside the
key, so that the operator can re-identify when the protocol allows it; that file is never returned by a
tool. Both are created readable by their owner only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..dicom.deidentify import DeidentifyOptions, deidentify_dataset
from ..dicom.reference import Reference
from ..errors import NotDicomError
from .dicomfiles import DicomFile

__all__ = ["DeidentifiedFile", "PseudonymStore", "deidentify_file"]

# Date shifts lie in this many days back (at least one: a copy never carries its original dates).
_MAX_SHIFT_DAYS = 3650
_PRIVATE = 0o600


class PseudonymStore:
    """Consistent replacements from one secret key; thread-safe (several files are de-identified at once)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._recorded: set[tuple[str, str]] = set()
        self._key = self._load_key()

    def _load_key(self) -> bytes:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / "key"
        if not path.exists():
            # Written whole under another name, then linked into place: a process starting at the same
            # moment reads either no key or the whole one, never an empty file, and only one key wins.
            temporary = self.directory / f".key-{secrets.token_hex(8)}"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE)
            with os.fdopen(fd, "w") as stream:
                stream.write(secrets.token_bytes(32).hex())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process was first: its key is the one
            finally:
                temporary.unlink()
        key = bytes.fromhex(path.read_text().strip())
        if len(key) != 32:
            raise OSError(
                f"{path} is not a de-identification key (64 hex digits): move it away to start anew"
            )
        return key

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).digest()

    def _record(self, kind: str, original: str, replacement: str | int) -> None:
        entry = (kind, original)
        with self._lock:
            if entry in self._recorded:
                return
            self._recorded.add(entry)
            line = json.dumps({"kind": kind, "original": original, "replacement": replacement})
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.directory / "mapping.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, _PRIVATE)
            with os.fdopen(fd, "a", encoding="utf-8") as stream:
                stream.write(line + "\n")

    def uid(self, original: str) -> str:
        new = f"2.25.{int.from_bytes(self._digest('uid', original)[:16], 'big')}"
        self._record("uid", original, new)
        return new

    def date_shift_days(self, patient_key: str) -> int:
        days = -(1 + int.from_bytes(self._digest("date", patient_key)[:4], "big") % _MAX_SHIFT_DAYS)
        self._record("date_shift_days", patient_key, days)
        return days

    def _pseudonym(self, patient_key: str) -> str:
        pseudonym = self._digest("patient", patient_key)[:5].hex().upper()
        self._record("patient", patient_key, pseudonym)
        return pseudonym

    def patient_id(self, patient_key: str) -> str:
        return f"ANON-{self._pseudonym(patient_key)}"

    def patient_name(self, patient_key: str) -> str:
        return f"ANONYMOUS^{self._pseudonym(patient_key)}"


@dataclass(frozen=True)
class DeidentifiedFile:
    file: DicomFile  # the copy, under its new UIDs
    warnings: list[str]
    actions: Counter[str]


def deidentify_file(
    source: Path, target_dir: Path, pseudonyms: PseudonymStore, options: DeidentifyOptions
) -> DeidentifiedFile:
    """Write the de-identified copy of the Part 10 file ``source`` to
    ``target_dir/{study}/{series}/{instance}.dcm`` (new UIDs), whole or not at all. Pixel data and the
    transfer syntax are kept as they are."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(source)
    except (InvalidDicomError, EOFError, ValueError, KeyError) as exc:
        # No file name or value in the message: a spool file is named by its source UIDs.
        raise NotDicomError(f"the file cannot be read as DICOM ({type(exc).__name__})") from None
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if not ds.get(keyword):
            raise NotDicomError(f"the file has no {keyword}")
    report = deidentify_dataset(ds, pseudonyms, options)
    target = Reference(report.study_uid, report.series_uid, report.instance_uid).file(target_dir, ".dcm")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".incoming-{uuid.uuid4().hex}.partial"
    try:
        ds.save_as(temporary, enforce_file_format=True)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    syntax = ds.file_meta.get("TransferSyntaxUID")
    copy = DicomFile(
        path=target,
        size=target.stat().st_size,
        study_uid=report.study_uid,
        series_uid=report.series_uid,
        instance_uid=report.instance_uid,
        sop_class_uid=str(ds.get("SOPClassUID") or ""),
        transfer_syntax_uid=str(syntax) if syntax else None,
    )
    return DeidentifiedFile(copy, report.warnings, report.actions)
