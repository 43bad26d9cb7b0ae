"""dicom/windows.py: presets, the window argument, an instance's own window, and the grey-level formula."""

from __future__ import annotations

import math
from typing import Any

import pytest

from dicomweb_mcp.dicom.windows import PRESETS, Window, grey_level, instance_window, parse_window
from dicomweb_mcp.errors import InvalidInputError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_by_name_any_case(name: str) -> None:
    center, width = PRESETS[name]
    assert parse_window(f" {name.upper()} ") == Window(center, width, "linear", name)


@pytest.mark.parametrize("value", [None, "", "  ", "default", "Instance"])
def test_no_window_means_the_images_own(value: str | None) -> None:
    assert parse_window(value) is None


def test_auto_is_min_max() -> None:
    assert parse_window(" AUTO ") == "auto"


@pytest.mark.parametrize(
    ("value", "center", "width"),
    [("40,400", 40, 400), ("-600/1500", -600, 1500), (" 40.5 , 1 ", 40.5, 1), ("1e3,2e3", 1000, 2000)],
)
def test_center_and_width(value: str, center: float, width: float) -> None:
    assert parse_window(value) == Window(center, width, "linear", "custom")


@pytest.mark.parametrize(
    "value", ["40", "40,0", "40,0.5", "40,-1", "a,b", "nan,400", "40,inf", "1,2,3", "soft"]
)
def test_bad_windows_are_refused_with_the_presets_listed(value: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_window(value)
    assert all(name in str(caught.value) for name in PRESETS)


@pytest.mark.parametrize(
    ("window", "label"),
    [
        (Window(-600, 1500, source="lung"), "lung -600/1500"),
        (Window(40.5, 400.0), "custom 40.5/400"),
        (Window(0.25, 1e6, source="auto"), "auto 0.25/1000000"),
    ],
)
def test_labels(window: Window, label: str) -> None:
    assert window.label() == label


# --- grey_level: PS3.3 C.11.2.1.2 / .3 -------------------------------------------------------------------


@pytest.mark.parametrize(("center", "width"), [(40, 400), (-600, 1500), (0, 2), (1000.5, 37)])
def test_linear_window_edges(center: float, width: float) -> None:
    window = Window(center, width)
    low = center - 0.5 - (width - 1) / 2  # the standard's x <= c - 0.5 - (w-1)/2 -> minimum
    high = center - 0.5 + (width - 1) / 2
    assert grey_level(low, window) == 0.0 and grey_level(low - 1000, window) == 0.0
    assert grey_level(high, window) == 1.0 and grey_level(high + 1000, window) == 1.0
    assert grey_level(center - 0.5, window) == pytest.approx(0.5)
    # Linear in between: equal steps give equal changes.
    a, b, c = (grey_level(low + (high - low) * f, window) for f in (0.25, 0.5, 0.75))
    assert b - a == pytest.approx(c - b)


def test_a_width_of_one_is_a_threshold() -> None:
    window = Window(100, 1)
    assert [grey_level(v, window) for v in (99, 99.4, 99.6, 100)] == [0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize(("center", "width"), [(40, 400), (-600, 1500)])
def test_linear_exact_window(center: float, width: float) -> None:
    window = Window(center, width, "linear_exact")
    assert grey_level(center - width / 2, window) == 0.0
    assert grey_level(center, window) == 0.5
    assert grey_level(center + width / 2, window) == 1.0


@pytest.mark.parametrize(("center", "width"), [(40, 400), (-600, 1500)])
def test_sigmoid_window(center: float, width: float) -> None:
    window = Window(center, width, "sigmoid")
    assert grey_level(center, window) == 0.5
    assert grey_level(center + width / 2, window) == pytest.approx(1 / (1 + math.exp(-2)))
    # Symmetric about the center, and never quite 0 or 1.
    assert grey_level(center - 10, window) == pytest.approx(1 - grey_level(center + 10, window))
    assert 0 < grey_level(center - 10 * width, window) < grey_level(center + 10 * width, window) <= 1


# --- instance_window: the window in an instance's DICOM JSON metadata --------------------------------------


def metadata(center: Any, width: Any, function: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "00281050": {"vr": "DS", "Value": center},
        "00281051": {"vr": "DS", "Value": width},
    }
    if function is not None:
        data["00281056"] = {"vr": "CS", "Value": [function]}
    return data


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (None, "linear"),
        ("LINEAR", "linear"),
        ("sigmoid", "sigmoid"),
        ("LINEAR_EXACT", "linear_exact"),
        ("ODD", "linear"),
    ],
)
def test_instance_window_and_its_function(function: str | None, expected: str) -> None:
    assert instance_window(metadata([40, 300], [400, 1500], function)) == Window(
        40, 400, expected, "instance"
    )  # type: ignore[arg-type]


def test_instance_window_from_decimal_strings() -> None:
    window = instance_window(metadata(["-600.5"], ["1500"]))
    assert window is not None and (window.center, window.width) == (-600.5, 1500)


@pytest.mark.parametrize(
    ("center", "width"),
    [([], [400]), ([40], []), (["x"], [400]), ([40], [0]), ([40], [-5]), (["nan"], [400])],
)
def test_no_usable_instance_window(center: list[Any], width: list[Any]) -> None:
    assert instance_window(metadata(center, width)) is None


def test_no_window_attributes_at_all() -> None:
    assert instance_window({}) is None
