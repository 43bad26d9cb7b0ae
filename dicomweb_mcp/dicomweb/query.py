"""QIDO-RS query strings: attribute matching validated against the DICOM dictionary, then encoded the way
the server will really read them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

from ..dicom.dictionary import Attribute, resolve_attribute
from ..dicom.validation import normalize_date_range, normalize_time_range, validate_uid
from ..errors import InvalidInputError
from .servers import ServerProfile

__all__ = ["MatchValue", "Query", "Resource", "build_query", "encode_query"]

MatchValue = str | int | Sequence[str]

# Characters an unescaped query value cannot carry: & ; = end the value, # ends the URL, and httpx
# percent-encodes space " % < > (checked against httpx), which Orthanc would then match literally.
_RAW_UNSENDABLE = frozenset(' "#%&;<=>')


Resource = Literal["studies", "series", "instances"]


@dataclass(frozen=True)
class Query:
    """A validated QIDO query: ``(name, value)`` pairs in order, and each matched attribute's VR."""

    pairs: tuple[tuple[str, str], ...] = ()
    vrs: Mapping[str, str] = field(default_factory=dict)  # attribute -> VR, for matching rules


def encode_query(query: Query, profile: ServerProfile) -> tuple[str, list[str]]:
    """The query string (without ``?``) as ``profile``'s server reads it, and what the caller should be
    told about it. A part the server cannot honour is changed to what means the same (with a warning) or
    refused: never sent to be silently widened or emptied. Orthanc's values go unescaped, and a limit
    above the server's cap is lowered."""
    warnings: list[str] = []
    encoded = []
    for name, value in _adapted(query, profile, warnings):
        if name == "limit" and profile.qido_limit_cap is not None and int(value) > profile.qido_limit_cap:
            cap = profile.qido_limit_cap
            warnings.append(f"limit {value} is above this server's maximum of {cap}; asked for {cap}.")
            value = str(cap)
        if profile.raw_query_values:
            sendable = "".join("?" if ch in _RAW_UNSENDABLE or not ch.isascii() else ch for ch in value)
            if sendable != value:
                warnings.append(
                    f"This server reads query values unescaped and cannot receive spaces or some "
                    f"symbols, so {name}={value!r} was sent as {name}={sendable!r} ('?' matches any "
                    "one character); check the results."
                )
            encoded.append(f"{name}={sendable}")
        else:
            encoded.append(f"{name}={quote(value, safe='*?,')}")
    return "&".join(encoded), warnings


def _adapted(query: Query, profile: ServerProfile, warnings: list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    fuzzy = ("fuzzymatching", "true") in query.pairs
    server = f"this {profile.kind.value} server"
    for name, value in query.pairs:
        vr = query.vrs.get(name, "")
        if name == "includefield" and value == "all" and not profile.include_all:
            warnings.append(
                f"{server} ignores includefield=all: only its default attributes and those named in "
                "include_fields come back."
            )
        elif name == "fuzzymatching" and not profile.fuzzy_matching:
            warnings.append(f"{server} has no fuzzy matching: names were matched as given.")
        elif vr == "UI" and "," in value and not profile.uid_lists:
            raise InvalidInputError(
                f"{name}: {server} does not match a list of UIDs; search for one UID at a time."
            )
        elif ("*" in value or "?" in value) and not profile.wildcards and name in query.vrs:
            prefix = value.rstrip("*")
            if vr == "PN" and profile.fuzzy_matching and prefix and not set("*?") & set(prefix):
                warnings.append(
                    f"{server} has no wildcards: {name}={value!r} was matched as names with a word "
                    f"starting {prefix!r} (fuzzy matching)."
                )
                pairs.append((name, prefix))
                if not fuzzy:
                    pairs.append(("fuzzymatching", "true"))
                    fuzzy = True
                continue
            raise InvalidInputError(
                f"{name}={value!r}: {server} matches exact values only, no * or ? wildcards. Give the "
                "exact value" + (", or a name prefix such as 'Smith*'." if vr == "PN" else ".")
            )
        pairs.append((name, value))
    return pairs


def build_query(
    match: Mapping[str, MatchValue | None] | None,
    *,
    filters: Sequence[tuple[str, MatchValue]] = (),
    include_fields: Iterable[str] = (),
    fuzzy: bool = False,
    limit: int | None = None,
    offset: int | None = None,
) -> Query:
    """Validate attribute names (keyword or tag) and values by VR, and the paging arguments.

    ``match`` maps names to values (None: not given); ``filters`` are more of them as a caller's user
    wrote them, each attribute at most once and not one ``match`` gives already. Nothing here depends on
    the server, so bad input is refused before any request (even the one that detects the server kind).
    """
    pairs: list[tuple[str, str]] = []
    vrs: dict[str, str] = {}
    named = {name: value for name, value in (match or {}).items() if value is not None}
    attributes: list[tuple[Attribute, MatchValue]] = [
        (resolve_attribute(name), value) for name, value in named.items()
    ]
    given = {attribute.keyword or attribute.tag for attribute, _ in attributes}
    from_filters: set[str] = set()
    for name, value in filters:
        attribute = resolve_attribute(name)
        key = attribute.keyword or attribute.tag
        if key in from_filters:
            raise InvalidInputError(f"filters name {name} twice: give each attribute once.")
        if key in given:
            raise InvalidInputError(f"{key} is given both as an argument and in filters: give it once.")
        from_filters.add(key)
        attributes.append((attribute, value))
    for attribute, value in attributes:
        # Keywords are what every server knows (Azure's are case-sensitive); unknown tags go as tags.
        key = attribute.keyword or attribute.tag
        pairs.append((key, _match_value(key, attribute.vr, value)))
        vrs[key] = attribute.vr
    for name in include_fields:
        if name.strip().lower() == "all":
            pairs.append(("includefield", "all"))
        else:
            attribute = resolve_attribute(name)
            pairs.append(("includefield", attribute.keyword or attribute.tag))
    if fuzzy:
        pairs.append(("fuzzymatching", "true"))
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInputError(f"limit {limit!r} must be a whole number of at least 1.")
        pairs.append(("limit", str(limit)))
    if offset is not None:
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidInputError(f"offset {offset!r} must be a whole number of at least 0.")
        if offset:
            pairs.append(("offset", str(offset)))
    return Query(tuple(pairs), vrs)


def _match_value(key: str, vr: str, value: MatchValue) -> str:
    if isinstance(value, bool):
        raise InvalidInputError(f"{key}: a true/false value is not a DICOM match value.")
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        values = [str(v) for v in value]
        if vr == "UI":
            return ",".join(validate_uid(v.strip(), key) for v in values)
        return ",".join(values)
    text = value.strip()
    if not text:
        return ""  # universal matching: return the attribute, whatever its value
    if vr == "UI":
        return ",".join(validate_uid(v.strip(), key) for v in text.split(","))
    if vr == "DA":
        return normalize_date_range(text, key)
    if vr == "TM":
        return normalize_time_range(text, key)
    if any(ord(ch) < 32 for ch in text):
        raise InvalidInputError(f"{key} value {value!r} contains control characters.")
    return text
