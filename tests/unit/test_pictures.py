"""imaging/pictures.py: encoding within a byte budget, PNG round trips, and reading a picture's size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dicomweb_mcp.imaging.pictures import decode, dimensions, encode, fit_budget, jpeg_budget


def noise(width: int, height: int, mode: str = "L", seed: int = 0) -> Image.Image:
    """Random pixels: incompressible, so JPEG size falls steadily with quality."""
    rng = np.random.default_rng(seed)
    shape = (height, width) if mode == "L" else (height, width, len(mode))
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


@pytest.mark.parametrize(
    ("size", "budget"), [((512, 512), 20_000), ((1024, 512), 40_000), ((10, 10), 3_000), ((0, 0), 3_000)]
)
def test_jpeg_budget_is_proportional_with_a_floor(size: tuple[int, int], budget: int) -> None:
    assert jpeg_budget(*size) == budget


def test_png_is_lossless() -> None:
    image = noise(33, 17)
    back = decode(encode(image, "image/png"))
    assert back.format == "PNG" and np.array_equal(np.asarray(back), np.asarray(image))


@pytest.mark.parametrize("budget", [8_000, 15_000, 40_000])
def test_the_budget_is_kept_when_a_quality_fits(budget: int) -> None:
    image = noise(128, 128)
    data = encode(image, "image/jpeg", budget=budget)
    assert len(data) <= budget and decode(data).format == "JPEG"


def test_the_best_fitting_quality_is_chosen() -> None:
    image = noise(96, 96)
    sizes = {q: len(encode(image, "image/jpeg", quality=q)) for q in (90, 85, 80)}
    # A budget between quality 85's and 90's sizes must give quality 85's picture exactly.
    budget = (sizes[85] + sizes[90]) // 2
    assert sizes[85] <= budget < sizes[90]
    assert fit_budget(image, budget) == encode(image, "image/jpeg", quality=85)


def test_when_nothing_fits_the_smallest_tried_is_returned() -> None:
    image = noise(64, 64)
    assert fit_budget(image, 10) == encode(image, "image/jpeg", quality=30)


def test_an_explicit_quality_ignores_the_budget() -> None:
    image = noise(64, 64)
    assert encode(image, "image/jpeg", quality=95, budget=10) == encode(image, "image/jpeg", quality=95)


@pytest.mark.parametrize("mode", ["RGBA", "I", "LA"])
def test_jpeg_of_modes_it_cannot_hold_goes_through_rgb(mode: str) -> None:
    image = noise(8, 8, "RGBA").convert(mode)
    assert decode(encode(image, "image/jpeg", quality=90)).mode == "RGB"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF"])
def test_dimensions_from_the_header(fmt: str) -> None:
    buffer = io.BytesIO()
    noise(21, 13).save(buffer, fmt)
    assert dimensions(buffer.getvalue()) == (21, 13)


@pytest.mark.parametrize("data", [b"", b"not a picture", b"\x89PNG\r\n\x1a\n truncated"])
def test_dimensions_of_what_is_not_a_picture(data: bytes) -> None:
    assert dimensions(data) is None
