"""De-identified copies of retrieved files: the profile (dicom/deidentify) applied through the operator's
pseudonym store (files/pseudonyms), one file at a time in a worker thread.

The store lives under the download directory (``.deidentify``): its key makes the same source UID give
the same new UID in every call and process, and its mapping file, which can re-identify, is never
returned in a result.
"""

from __future__ import annotations

import functools
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio

from ..config import Config
from ..dicom.reference import Reference
from ..errors import NotDicomError
from ..files.dicomfiles import DicomFile
from ..files.store import FileStore

if TYPE_CHECKING:
    from ..files.pseudonyms import PseudonymStore

__all__ = ["SPOOLS", "Deidentification", "new_spool", "remove_spool", "sweep_spools"]

# Where source files wait under the download directory: a de-identified retrieve's, a transfer's.
SPOOLS = (".spool", ".transfer")
# A spool nothing was written to for this long was left by a process that died.
_STALE_SECONDS = 3600

# Burned-in text warnings listed in a result; the count says how many there were in all.
_MAX_WARNINGS = 10


@dataclass
class Deidentification:
    """One call's de-identification: the files it made and the warnings they carry."""

    config: Config
    warnings: list[str] = field(default_factory=list)
    warned: int = 0
    failures: list[str] = field(default_factory=list)  # why instances were left out

    def __post_init__(self) -> None:
        from ..dicom.deidentify import DeidentifyOptions

        self.pseudonyms = _pseudonyms(self.config.download_dir / ".deidentify")
        self.options = DeidentifyOptions(
            modified_dates=self.config.deidentify_modified_dates,
            clean_descriptors=self.config.deidentify_clean_descriptors,
        )

    def uid(self, original: str) -> str:
        """The new UID a source UID gets (the same in every call)."""
        return self.pseudonyms.uid(original)

    def reference(self, original: Reference) -> Reference:
        """The reference a de-identified copy of ``original`` has."""
        series, instance = original.series_uid, original.instance_uid
        return Reference(
            self.uid(original.study_uid),
            self.uid(series) if series else None,
            self.uid(instance) if instance else None,
        )

    async def apply(self, record: DicomFile, target_dir: Path) -> DicomFile | None:
        """Write the de-identified copy of ``record`` under ``target_dir`` (named by its new UIDs) and
        remove the original. An instance that cannot be de-identified is left out (None) and counted: it
        never goes on as it is, and no message names its source UIDs."""
        from ..files.pseudonyms import DeidentifiedFile, deidentify_file

        source = record.path

        def work() -> DeidentifiedFile | str:
            try:
                return deidentify_file(source, target_dir, self.pseudonyms, self.options)
            except OSError:
                raise
            except NotDicomError as exc:
                return exc.reason
            except Exception as exc:  # pydicom refusing a value it cannot read or write: this instance only
                return f"{type(exc).__name__} while de-identifying"
            finally:
                source.unlink(missing_ok=True)

        made = await anyio.to_thread.run_sync(work)
        if isinstance(made, str):
            self.failures.append(made)
            return None
        for warning in made.warnings:
            self.warned += 1
            if len(self.warnings) < _MAX_WARNINGS:
                self.warnings.append(f"{made.file.instance_uid}: {warning}")
        return made.file

    def summary(self) -> list[str]:
        """The warnings to show, with a count of those left out."""
        more = self.warned - len(self.warnings)
        shown = self.warnings + (
            [f"... and {more} more instances with the same warnings"] if more > 0 else []
        )
        if self.failures:
            reasons = "; ".join(sorted(set(self.failures))[:3])
            shown.insert(
                0, f"{len(self.failures)} instances could not be de-identified and were left out ({reasons})"
            )
        return shown


@functools.cache
def _pseudonyms(directory: Path) -> PseudonymStore:
    """One store a directory for the process: its mapping file gets each replacement once, not once a call."""
    from ..files.pseudonyms import PseudonymStore

    return PseudonymStore(directory)


def new_spool(store: FileStore, kind: Literal["download", "transfer"]) -> Path:
    """A new spool's path (made by its first file) under the download directory, in its kind's SPOOLS
    directory: ``remove_spool`` once done, ``sweep_spools`` after a crash."""
    return store.directory() / SPOOLS[0 if kind == "download" else 1] / uuid.uuid4().hex


async def remove_spool(spool: Path) -> None:
    """Remove a spool of source files, also when the call is being cancelled: what it holds is not
    de-identified and must not stay behind."""
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(shutil.rmtree, spool, True)


async def sweep_spools(root: Path, stale_seconds: float = _STALE_SECONDS) -> int:
    """Remove spools a crashed process left behind (they hold source files, not de-identified); return how
    many. A spool in use has files written within the last minutes, so only stale ones go."""
    return await anyio.to_thread.run_sync(_sweep, root, stale_seconds)


def _sweep(root: Path, stale_seconds: float) -> int:
    now = time.time()
    removed = 0
    for name in SPOOLS:
        parent = root / name
        if not parent.is_dir():
            continue
        for spool in parent.iterdir():
            try:
                newest = max([spool.stat().st_mtime, *(p.stat().st_mtime for p in spool.rglob("*"))])
            except OSError:
                continue  # changing under us: in use
            if now - newest > stale_seconds:
                shutil.rmtree(spool, ignore_errors=True)
                removed += 1
    return removed
