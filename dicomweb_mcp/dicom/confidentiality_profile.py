"""The standard's Table E.1-1 (DICOM PS3.15 Annex E, Application Level Confidentiality Profile Attributes),
held as data (data/confidentiality_profile.tsv): each attribute's Basic Profile action, and whether the
Modified Dates and Clean Descriptors options change it.

Where the table gives a choice that depends on the IOD's attribute type (X/Z, X/D, Z/D, X/Z/D), the one
that keeps every object conformant whatever the type is taken: Z for X/Z, D wherever D is allowed.
X/Z/U* (sequences of references) keeps the sequence with its UIDs replaced.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["ConfidentialityProfile", "ProfileRule", "load_profile", "profile_summary"]


@dataclass(frozen=True, slots=True)
class ProfileRule:
    tag: str  # eight hex digits, "x" for a wildcard digit
    basic: str  # the Basic Profile action: X, Z, D, U, K, C or a choice such as X/Z
    modified_dates: bool  # the Modified Dates option changes it (a date or time)
    clean_descriptor: bool  # the Clean Descriptors option keeps it cleaned
    name: str

    @property
    def action(self) -> str:
        """The Basic Profile action, a choice the table leaves to the IOD's attribute type resolved to
        one that is always conformant."""
        if "/" not in self.basic:
            return self.basic
        if self.basic == "X/Z/U*":
            return "U"
        return "D" if "D" in self.basic.split("/") else "Z"


@dataclass(frozen=True)
class ConfidentialityProfile:
    exact: dict[int, ProfileRule]
    patterns: list[tuple[int, int, ProfileRule]]  # (mask, value, rule) for tags with wildcards
    rules: list[ProfileRule]

    def rule(self, tag: int) -> ProfileRule | None:
        found = self.exact.get(tag)
        if found is not None:
            return found
        for mask, value, rule in self.patterns:
            if tag & mask == value:
                return rule
        return None


@cache
def load_profile() -> ConfidentialityProfile:
    """The standard's Table E.1-1, parsed once."""
    text = resources.files(__package__).joinpath("data/confidentiality_profile.tsv").read_text("utf-8")
    exact: dict[int, ProfileRule] = {}
    patterns: list[tuple[int, int, ProfileRule]] = []
    rules = []
    for line in text.splitlines()[1:]:
        if not line or line.startswith(("#", "tag\t")):
            continue
        tag, basic, dates, descriptor, name = line.split("\t")
        rule = ProfileRule(tag, basic, dates == "C", descriptor == "C", name)
        rules.append(rule)
        if tag == "odd":
            continue  # private attributes: removed by group, not looked up by tag
        if "x" in tag:
            mask = int("".join("0" if c == "x" else "f" for c in tag), 16)
            patterns.append((mask, int(tag.replace("x", "0"), 16), rule))
        else:
            exact[int(tag, 16)] = rule
    return ConfidentialityProfile(exact, patterns, rules)


def profile_summary() -> dict[str, int]:
    """How many of the table's attributes each Basic Profile action covers."""
    return dict(Counter(rule.basic for rule in load_profile().rules).most_common())
