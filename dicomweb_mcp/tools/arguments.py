"""The tools' argument types: one definition each, shared by every tool that takes the argument.

Optional arguments accept an empty value as "not given": hosts in OpenAI's strict mode must send every
argument, and send "" or [] for the ones the model means to leave out. UIDs are validated once, where
the tool makes them a ``Reference`` or a query, with a message that says what a UID looks like.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from ..dicomweb.models import EXPLICIT_VR_LITTLE_ENDIAN

__all__ = [
    "Deidentify",
    "DeleteInstanceUid",
    "DeleteSeriesUid",
    "Filters",
    "FrameTransferSyntax",
    "Fuzzy",
    "IncludeFields",
    "InstanceUid",
    "Limit",
    "Offset",
    "OptionalInstanceUid",
    "OptionalSeriesUid",
    "OptionalSopClassUid",
    "OptionalStudyUid",
    "SeriesUid",
    "ServerChoice",
    "ServerName",
    "StudyUid",
    "Text",
    "TransferSyntax",
    "match_pairs",
]


def _blank_is_absent(value: Any) -> Any:
    return None if value == "" or value == [] else value


Text = Annotated[str | None, BeforeValidator(_blank_is_absent)]
# One of the operator's named servers (without it, the first); the published schema lists them as an enum
# (tools/server.py) and leaves the argument out where only one server is configured.
ServerName = Annotated[str | None, BeforeValidator(_blank_is_absent)]
ServerChoice = str
Deidentify = Annotated[bool, Field(description="Copy de-identified (PS3.15 Basic Profile).")]


# Plain UID arguments carry no description: their names say what they are, in every host's prompt.
StudyUid = str
SeriesUid = str
InstanceUid = str
OptionalStudyUid = Annotated[str | None, BeforeValidator(_blank_is_absent)]
OptionalSeriesUid = Annotated[str | None, BeforeValidator(_blank_is_absent)]
OptionalInstanceUid = Annotated[
    str | None,
    BeforeValidator(_blank_is_absent),
    Field(description="Needs series_uid."),
]
OptionalSopClassUid = Annotated[
    str | None,
    BeforeValidator(_blank_is_absent),
    Field(description="e.g. 1.2.840.10008.5.1.4.1.1.2 (CT)."),
]


def _match_text(attribute: Any, value: Any) -> str:
    return f"{attribute}={','.join(map(str, value)) if isinstance(value, list) else value}"


def _filters(value: Any) -> Any:
    """Published as ``Keyword=value`` strings (every LLM API takes a list of strings, and they cost a
    third of the bytes of objects); a map {keyword: value} and attribute/value items, which models also
    write, mean the same, a list value being a UID list."""
    if isinstance(value, dict):
        return [_match_text(key, item) for key, item in value.items()]
    if isinstance(value, list):
        items = []
        for item in value:
            if isinstance(item, dict) and "attribute" in item:
                if "value" not in item:
                    raise ValueError(f"the filter on {item['attribute']} has no value: write Keyword=value.")
                item = _match_text(item["attribute"], item["value"])
            items.append(item)
        value = items
    return _blank_is_absent(value)


def _match(item: str) -> str:
    attribute, equals, _ = item.partition("=")
    if not equals or not attribute.strip():
        raise ValueError(f"{item!r} is not Keyword=value (for example BodyPartExamined=CHEST).")
    return item


def match_pairs(filters: list[str] | None) -> list[tuple[str, str]]:
    """``Keyword=value`` filters as (attribute, value) pairs."""
    return [(attribute.strip(), value) for attribute, _, value in (f.partition("=") for f in filters or ())]


Filters = Annotated[
    list[Annotated[str, AfterValidator(_match)]] | None,
    BeforeValidator(_filters),
    Field(description="More to match: Keyword=value, e.g. BodyPartExamined=CHEST."),
]
IncludeFields = Annotated[
    list[str] | None,
    Field(description='Attributes to add, or ["all"].'),
]
Fuzzy = Annotated[bool, Field(description="Fuzzy name matching, where the server has it.")]
Limit = Annotated[int, Field(ge=1, le=200)]
Offset = Annotated[int, Field(ge=0, description="The last result's next_offset.")]
_SYNTAX = Field(pattern=r"^(\*|[0-9]+(\.[0-9]+)*)$", max_length=64)
# Empty means each tool's own default: as stored for instances, uncompressed for frames.
TransferSyntax = Annotated[str, BeforeValidator(lambda value: value or "*"), _SYNTAX]
FrameTransferSyntax = Annotated[
    str, BeforeValidator(lambda value: value or EXPLICIT_VR_LITTLE_ENDIAN), _SYNTAX
]


def _not_blank(name: str, meaning: str) -> BeforeValidator:
    """For delete: an empty UID must not quietly widen a deletion to the whole study."""

    def check(value: Any) -> Any:
        if value == "":
            raise ValueError(f"{name} is empty: leave it out (or null) {meaning}, or give the UID.")
        return value

    return BeforeValidator(check)


DeleteSeriesUid = Annotated[
    str | None,
    _not_blank("series_uid", "to delete the whole study"),
    Field(description="Only this series."),
]
DeleteInstanceUid = Annotated[
    str | None,
    _not_blank("instance_uid", "to delete the whole series or study"),
    Field(description="Only this instance (needs series_uid)."),
]
