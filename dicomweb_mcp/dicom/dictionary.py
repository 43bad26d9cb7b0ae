"""DICOM attributes by keyword or tag: the single place where names and tags convert.

The dictionary itself is pydicom's data; this module only accepts the spellings people and servers use
(``PatientName``, ``00100010``, ``(0010,0010)``, ``0010,0010``) and answers one ``Attribute``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidInputError

__all__ = ["Attribute", "resolve_attribute", "tag_of"]

_TAG_RE = re.compile(r"^\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?$")


@dataclass(frozen=True, slots=True)
class Attribute:
    tag: str  # eight upper-case hex digits, as DICOM JSON keys are written
    keyword: str  # empty for private or unknown-but-well-formed tags
    vr: str  # "" when the dictionary does not know the tag


def resolve_attribute(name: str) -> Attribute:
    """Resolve a keyword or a tag to an ``Attribute``; unknown keywords are an ``InvalidInputError``."""
    # pydicom is loaded on first use, not at start-up: an MCP host waits for start-up before anything.
    from pydicom import datadict

    text = name.strip()
    match = _TAG_RE.match(text)
    if match:
        tag_hex = (match.group(1) + match.group(2)).upper()
        tag = int(tag_hex, 16)
        try:
            return Attribute(tag_hex, datadict.keyword_for_tag(tag), datadict.dictionary_VR(tag))
        except KeyError:
            # A private or not-yet-known tag is still a legal query key (extended query tags on Azure).
            return Attribute(tag_hex, "", "")
    known = datadict.tag_for_keyword(text)
    if known is None:
        suggestion = _closest_keyword(text)
        hint = f" Did you mean '{suggestion}'?" if suggestion else ""
        raise InvalidInputError(
            f"'{name}' is not a DICOM keyword or tag.{hint} Use a keyword such as 'PatientName' "
            "or a tag such as '00100010'."
        )
    return Attribute(f"{known:08X}", text, datadict.dictionary_VR(known))


def tag_of(keyword: str) -> str:
    """The eight-hex-digit tag of a keyword known to be valid (used for the package's own constants)."""
    return resolve_attribute(keyword).tag


def _closest_keyword(text: str) -> str | None:
    import difflib

    from pydicom import datadict

    lowered = text.lower()
    keywords = [kw for kw in datadict.keyword_dict if kw]
    for kw in keywords:  # a case slip is the most common mistake
        if kw.lower() == lowered:
            return kw
    matches = difflib.get_close_matches(text, keywords, n=1, cutoff=0.8)
    return matches[0] if matches else None
