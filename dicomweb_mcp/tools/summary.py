"""Summaries of DICOM JSON datasets: the few attributes an agent needs, by readable names.

Which attribute a summary field holds is said once, on the result model's field (``Keyword``); keywords
turn into tags through the one dictionary module, and values are read with the DICOM JSON accessors.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..dicom.dicomjson import DicomJson, element_value
from ..dicom.dictionary import resolve_attribute

__all__ = ["Keyword", "extra_fields", "summarize", "summary_fields"]


@dataclass(frozen=True, slots=True)
class Keyword:
    """Marks a result field as the value of one DICOM attribute: ``Annotated[str | None, Keyword(...)]``.
    The field's declaration is then the one place that says where a summary's value comes from."""

    keyword: str


# Fields that are lists whatever their multiplicity, so an agent never has to check.
_ALWAYS_LISTS = frozenset({"modalities"})


@functools.cache
def summary_fields(model: type[BaseModel]) -> dict[str, str]:
    """The model's fields that carry a ``Keyword``, by field name, in declaration order."""
    return {
        name: marker.keyword
        for name, info in model.model_fields.items()
        for marker in info.metadata
        if isinstance(marker, Keyword)
    }


@functools.cache
def _adapters(model: type[BaseModel]) -> dict[str, TypeAdapter[Any]]:
    adapters: dict[str, TypeAdapter[Any]] = {}
    for name in summary_fields(model):
        annotation: Any = model.model_fields[name].annotation
        adapters[name] = TypeAdapter(annotation)
    return adapters


def _fitted(value: Any, adapter: TypeAdapter[Any]) -> Any:
    """``value`` as the field's type, or None when it cannot be one: servers send malformed values (an
    InstanceNumber of ``1A``, two Rows), and one of them must not make a whole result fail."""
    for candidate in (value, "\\".join(map(str, value)) if isinstance(value, list) else str(value)):
        try:
            return adapter.validate_python(candidate)
        except ValidationError:
            continue
    return None


def summarize(dataset: DicomJson, model: type[BaseModel]) -> dict[str, Any]:
    """The values of ``model``'s attribute fields that ``dataset`` has (absent and empty ones are left
    out, and so are those that are not of the field's type, such as a number that is not one), by field
    name."""
    summary: dict[str, Any] = {}
    adapters = _adapters(model)
    for name, keyword in summary_fields(model).items():
        value = element_value(dataset, keyword)
        if value is None:
            continue
        if name in _ALWAYS_LISTS and not isinstance(value, list):
            value = [value]
        value = _fitted(value, adapters[name])
        if value is not None:
            summary[name] = value
    return summary


def extra_fields(dataset: DicomJson, names: Iterable[str], model: type[BaseModel]) -> dict[str, Any]:
    """Values of requested attributes (keywords or tags), keyed by keyword, for ``include_fields``;
    ``all`` means every attribute the server returned that has a plain value. Attributes ``model``
    summarizes already are left out."""
    skipped = set(summary_fields(model).values())
    extras: dict[str, Any] = {}
    wanted = list(names)
    if any(name.strip().lower() == "all" for name in wanted):
        wanted = [tag for tag in dataset if len(tag) == 8]
    for name in wanted:
        attribute = resolve_attribute(name)
        key = attribute.keyword or attribute.tag
        if key in skipped:
            continue
        value = element_value(dataset, attribute.tag)
        if value is not None:
            extras[key] = value
    return extras
