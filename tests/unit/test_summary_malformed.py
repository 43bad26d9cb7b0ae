"""Search and metadata summaries of malformed values from a server: what fits the field's type is kept
(``"7"`` as 7), what does not is dropped, and the result model never raises."""

from __future__ import annotations

from typing import Any

import pytest

from dicomweb_mcp.dicom.dicomjson import json_key
from dicomweb_mcp.tools.results import InstanceMetadata, InstanceSummary
from dicomweb_mcp.tools.summary import summarize


def metadata(**values: tuple[str, Any]) -> dict[str, Any]:
    return {json_key(k): {"vr": vr, "Value": [v]} for k, (vr, v) in values.items()}


@pytest.mark.parametrize("model", [InstanceSummary, InstanceMetadata])
def test_a_summary_keeps_what_fits_and_drops_what_does_not(model: type[InstanceSummary]) -> None:
    data = metadata(
        SOPInstanceUID=("UI", "1.2.3"),
        InstanceNumber=("IS", "1A"),
        NumberOfFrames=("IS", 2.5),
        Columns=("US", "7"),
        Modality=("CS", 5),
    )
    data["00280010"] = {"vr": "US", "Value": [1, 2]}  # two Rows
    summary = summarize(data, model)
    built = model(**summary)
    assert built.instance_uid == "1.2.3"
    assert built.instance_number is None and built.number_of_frames is None and built.rows is None
    assert built.columns == 7 and built.modality == "5"
