"""Local DICOM files: find them, check they are DICOM, and read the UIDs a STOW needs.

Only files that parse as DICOM Part 10 are ever sent, so a path handed to the store tool cannot be used
to upload an arbitrary file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..dicom.part10 import HEAD_BYTES, read_header
from ..dicom.reference import Reference
from ..dicom.validation import is_valid_uid

__all__ = ["DicomFile", "SkippedFile", "collect_dicom_files", "read_dicom_file"]

# With pydicom only the header is read: the UIDs sit in the first few KiB, pixel data is never loaded.
_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"]


@dataclass(frozen=True, slots=True)
class DicomFile:
    """A local file known to be DICOM Part 10, with the UIDs read from its header: one found to upload,
    one just downloaded, a de-identified copy, one on its way to another server."""

    path: Path
    size: int
    study_uid: str
    series_uid: str
    instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str | None = None

    @property
    def reference(self) -> Reference:
        return Reference(self.study_uid, self.series_uid, self.instance_uid)

    def manifest_entry(self) -> dict[str, str | int]:
        """What a manifest says of the file (its keys are part of the manifest's format)."""
        entry: dict[str, str | int] = {
            "path": str(self.path),
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "instance_uid": self.instance_uid,
            "size_bytes": self.size,
        }
        if self.transfer_syntax_uid:
            entry["transfer_syntax_uid"] = self.transfer_syntax_uid
        if self.sop_class_uid:
            entry["sop_class_uid"] = self.sop_class_uid
        return entry


@dataclass(frozen=True, slots=True)
class SkippedFile:
    path: Path
    reason: str


def read_dicom_file(path: Path, head: bytes | None = None) -> DicomFile | SkippedFile:
    """Read the UIDs of a DICOM Part 10 file, or say why it is not one we can send.

    ``head``: the file's first bytes if the caller has them already (a download in progress). The fast
    reader answers for well-formed files; pydicom decides every other case, so a file is never refused
    on the fast reader's word alone.
    """
    try:
        size = path.stat().st_size
        if head is None:
            with path.open("rb") as stream:
                head = stream.read(HEAD_BYTES)
    except OSError as exc:
        return SkippedFile(path, f"unreadable: {exc.strerror or exc}")
    fast = read_header(head)
    if fast is not None and all(
        value and is_valid_uid(value)
        for value in (fast.study_uid, fast.series_uid, fast.instance_uid, fast.sop_class_uid)
    ):
        return DicomFile(
            path=path,
            size=size,
            study_uid=fast.study_uid or "",
            series_uid=fast.series_uid or "",
            instance_uid=fast.instance_uid or "",
            sop_class_uid=fast.sop_class_uid or "",
            transfer_syntax_uid=fast.transfer_syntax_uid,
        )
    return _read_with_pydicom(path, size)


def _read_with_pydicom(path: Path, size: int) -> DicomFile | SkippedFile:
    # Imported here: pydicom would slow every start-up and is needed only for odd files.
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
    except InvalidDicomError:
        return SkippedFile(path, "not a DICOM Part 10 file (no DICM preamble)")
    except OSError as exc:
        return SkippedFile(path, f"unreadable: {exc.strerror or exc}")
    except Exception as exc:  # pydicom raises many types on damaged files
        return SkippedFile(path, f"not a readable DICOM file ({type(exc).__name__})")
    uids = {}
    for keyword in _TAGS:
        value = str(getattr(ds, keyword, "") or "").strip()
        if not is_valid_uid(value):
            return SkippedFile(path, f"missing or invalid {keyword}")
        uids[keyword] = value
    transfer_syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return DicomFile(
        path=path,
        size=size,
        study_uid=uids["StudyInstanceUID"],
        series_uid=uids["SeriesInstanceUID"],
        instance_uid=uids["SOPInstanceUID"],
        sop_class_uid=uids["SOPClassUID"],
        transfer_syntax_uid=str(transfer_syntax) if transfer_syntax else None,
    )


def collect_dicom_files(
    paths: Iterable[str | Path], allowed_roots: Sequence[Path] = ()
) -> tuple[list[DicomFile], list[SkippedFile]]:
    """Files and directories (searched recursively, in a stable order) -> DICOM files and skipped ones.

    With ``allowed_roots``, a file is read only if it really lies (symlinks resolved) under one of them.
    """
    found: list[DicomFile] = []
    skipped: list[SkippedFile] = []
    seen: set[Path] = set()
    roots = [r.expanduser().resolve() for r in allowed_roots]

    def allowed(path: Path) -> bool:
        return not roots or any(path.resolve().is_relative_to(r) for r in roots)

    outside = "outside the upload roots (DICOMWEB_UPLOAD_ROOTS): not read"
    for given in paths:
        root = Path(given).expanduser()
        if root.exists() and not allowed(root):
            skipped.append(SkippedFile(root, outside))  # not even walked
            continue
        if root.is_dir():
            candidates = sorted(p for p in root.rglob("*") if p.is_file())
        elif root.exists():
            candidates = [root]
        else:
            skipped.append(SkippedFile(root, "no such file or directory"))
            continue
        for path in candidates:
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            if not allowed(path):
                skipped.append(SkippedFile(path, outside))
                continue
            result = read_dicom_file(path)
            (found if isinstance(result, DicomFile) else skipped).append(result)  # type: ignore[arg-type]
    return found, skipped
