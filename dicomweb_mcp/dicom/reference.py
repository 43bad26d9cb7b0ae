"""A study, series or instance by its UIDs: the one shape a reference has in every layer.

Made once where UIDs enter (a tool's arguments, a file's header, a server's answer) and validated then:
UIDs are digits and dots only, so the DICOMweb path and the local file name built from them can never
leave their root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import InvalidInputError
from .validation import validate_uid

__all__ = ["Level", "Reference"]

Level = Literal["study", "series", "instance"]


@dataclass(frozen=True, slots=True)
class Reference:
    study_uid: str
    series_uid: str | None = None
    instance_uid: str | None = None

    def __post_init__(self) -> None:
        validate_uid(self.study_uid, "study_uid")
        if self.series_uid is not None:
            validate_uid(self.series_uid, "series_uid")
        if self.instance_uid is not None:
            if self.series_uid is None:
                raise InvalidInputError("instance_uid needs series_uid too: give both, or neither.")
            validate_uid(self.instance_uid, "instance_uid")

    @classmethod
    def scope(cls, study_uid: str | None, series_uid: str | None = None) -> Reference | None:
        """What a search is limited to: a study, a series of a study, or nothing (None)."""
        if study_uid is None:
            if series_uid is not None:
                raise InvalidInputError("series_uid scopes a search only together with study_uid: give both.")
            return None
        return cls(study_uid, series_uid)

    @property
    def level(self) -> Level:
        return "instance" if self.instance_uid else "series" if self.series_uid else "study"

    @property
    def path(self) -> str:
        """The DICOMweb resource path: ``/studies/{study}[/series/{series}[/instances/{instance}]]``."""
        path = f"/studies/{self.study_uid}"
        if self.series_uid is not None:
            path += f"/series/{self.series_uid}"
            if self.instance_uid is not None:
                path += f"/instances/{self.instance_uid}"
        return path

    def file(self, root: Path, suffix: str = "") -> Path:
        """Where it is kept under ``root``: ``{root}/{study}[/{series}[/{instance}]]{suffix}``."""
        path = root / self.study_uid
        if self.series_uid is not None:
            path = path / self.series_uid
            if self.instance_uid is not None:
                path = path / self.instance_uid
        return path.with_name(path.name + suffix) if suffix else path

    def level_file(self, root: Path, name: str) -> Path:
        """A file about the whole reference: ``{study}/{name}.json``, ``{study}/{series}/{name}.json`` or
        ``{study}/{series}/{instance}.{name}.json``."""
        if self.instance_uid is not None:
            return self.file(root, f".{name}.json")
        return self.file(root) / f"{name}.json"

    def __str__(self) -> str:
        return f"{self.level} {self.instance_uid or self.series_uid or self.study_uid}"
