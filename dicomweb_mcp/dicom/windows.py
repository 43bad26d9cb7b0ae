"""Display windows (VOI, PS3.3 C.11.2): the named presets, the ``window`` argument, and the window an
instance carries in its own metadata.

A window is in modality units (Hounsfield units for CT): the value after the modality LUT (rescale). The
grey level a window gives is computed here too, so the local renderer and the tests use one formula.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InvalidInputError
from .dicomjson import element_values

__all__ = ["PRESETS", "Window", "grey_level", "instance_window", "parse_window"]

WindowFunction = Literal["linear", "linear_exact", "sigmoid"]

# Center and width in HU, as radiologists use them.
PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600, 1500),
    "mediastinum": (50, 350),
    "bone": (400, 1800),
    "brain": (40, 80),
    "abdomen": (50, 400),
}
_FUNCTIONS: dict[str, WindowFunction] = {
    "LINEAR": "linear",
    "LINEAR_EXACT": "linear_exact",
    "SIGMOID": "sigmoid",
}


@dataclass(frozen=True, slots=True)
class Window:
    center: float
    width: float
    function: WindowFunction = "linear"
    # Where it came from: a preset's name, "custom", "instance" (the image's own VOI) or "auto" (min-max).
    source: str = "custom"

    def label(self) -> str:
        """``lung -600/1500``: the source and the numbers, for a result the model reads."""
        return f"{self.source} {_number(self.center)}/{_number(self.width)}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def parse_window(value: str | None) -> Window | Literal["auto"] | None:
    """The ``window`` argument: None (the image's own), ``auto`` (min-max), a preset, or ``center,width``."""
    if value is None or not value.strip() or value.strip().lower() in ("default", "instance"):
        return None
    text = value.strip().lower()
    if text == "auto":
        return "auto"
    if text in PRESETS:
        center, width = PRESETS[text]
        return Window(center, width, source=text)
    parts = [p.strip() for p in text.replace("/", ",").split(",")]
    try:
        center, width = (float(p) for p in parts) if len(parts) == 2 else (math.nan, math.nan)
    except ValueError:
        center = width = math.nan
    if not (math.isfinite(center) and math.isfinite(width)) or width < 1:
        raise InvalidInputError(
            f"window {value!r} must be {', '.join(PRESETS)}, auto, or 'center,width' in modality units "
            "(HU for CT) with a width of at least 1, such as '40,400'."
        )
    return Window(center, width)


def instance_window(metadata: Mapping[str, Any]) -> Window | None:
    """The first window an instance's metadata (DICOM JSON) names, with its VOI LUT function."""
    centers = element_values(metadata, "WindowCenter")
    widths = element_values(metadata, "WindowWidth")
    try:
        center, width = float(centers[0]), float(widths[0])
    except (IndexError, TypeError, ValueError):
        return None
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        return None
    function = element_values(metadata, "VOILUTFunction")
    name = _FUNCTIONS.get(str(function[0]).upper(), "linear") if function else "linear"
    return Window(center, width, name, "instance")


def grey_level(value: float, window: Window) -> float:
    """The display value (0..1) of one modality value through ``window`` (PS3.3 C.11.2.1.2 and .3)."""
    if window.function == "sigmoid":
        return 1.0 / (1.0 + math.exp(-4.0 * (value - window.center) / window.width))
    if window.function == "linear_exact":
        position = (value - window.center) / window.width + 0.5
    else:
        width = max(window.width - 1.0, 1e-9)
        position = (value - (window.center - 0.5)) / width + 0.5
    return min(1.0, max(0.0, position))
