"""Azure DICOM service answers, shaped as its conformance statement describes (for respx-mocked tests)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

BASE = "https://ws-svc.dicom.azurehealthcareapis.com/v2"
DICOM_JSON = {"content-type": "application/dicom+json"}


def sop_item(uid: str, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.7"]},
        "00081155": {"vr": "UI", "Value": [uid]},
    }
    for tag, value in extra.items():
        item[tag] = {"vr": "US", "Value": [value]}
    return item


def stow_response(
    referenced: Sequence[dict[str, Any]] = (), failed: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    body: dict[str, Any] = {"00081190": {"vr": "UR", "Value": [f"{BASE}/studies/1.2.3"]}}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": list(referenced)}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": list(failed)}
    return body


class FakeCredential:
    """A sync TokenCredential handing out numbered tokens; records every call."""

    def __init__(self, lifetime: float = 3600) -> None:
        self.calls = 0
        self.lifetime = lifetime

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self.calls += 1
        assert scopes == ("https://dicom.healthcareapis.azure.com/.default",)

        class Token:
            token = f"token-{self.calls}"
            expires_on = int(time.time() + self.lifetime)

        return Token()


CHANGE_FEED = [
    {
        "sequence": 1,
        "partitionName": "Microsoft.Default",
        "studyInstanceUid": "1.2.3",
        "seriesInstanceUid": "1.2.3.4",
        "sopInstanceUid": "1.2.3.4.5",
        "action": "Create",
        "timestamp": "2023-05-10T16:00:00.123+00:00",
        "state": "Deleted",
        "metadata": None,
    },
    {
        "Sequence": 2,
        "PartitionName": "Microsoft.Default",
        "StudyInstanceUid": "1.2.3",
        "SeriesInstanceUid": "1.2.3.4",
        "SopInstanceUid": "1.2.3.4.5",
        "Action": "Delete",
        "Timestamp": "2023-05-10T16:05:00+00:00",
        "State": "Current",
        "Metadata": {"00100010": {"vr": "PN"}},
    },
]
