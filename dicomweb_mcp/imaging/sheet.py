"""The contact sheet: one labelled tile per series in a grid, one small JPEG.

The grid is computed by ``layout`` alone (the tests read tiles back through it): tiles in series order, row
by row; each tile is a square picture area with a label strip under it. A series without a picture (a
report, or one that failed to render) gets its label and a word in place of the picture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .pictures import fit_budget

if TYPE_CHECKING:
    from PIL.Image import Image
    from PIL.ImageDraw import ImageDraw
    from PIL.ImageFont import FreeTypeFont, ImageFont

__all__ = ["SHEET_BUDGET", "Layout", "Tile", "contact_sheet", "layout"]

SHEET_BUDGET = 30_000
_MAX_WIDTH = 768
_LABEL_HEIGHT = 28
_BACKGROUND = 24
_TEXT = 235
_MUTED = 150


@dataclass(frozen=True, slots=True)
class Tile:
    label: str  # first line: number, modality, description
    detail: str  # second line: counts
    image: Image | None = None
    placeholder: str = "no image"  # shown when there is no picture


@dataclass(frozen=True, slots=True)
class Layout:
    count: int
    columns: int
    rows: int
    tile: int  # edge of the square picture area

    @property
    def width(self) -> int:
        return self.columns * self.tile

    @property
    def height(self) -> int:
        return self.rows * (self.tile + _LABEL_HEIGHT)

    def picture_box(self, index: int) -> tuple[int, int, int, int]:
        """Left, top, right, bottom of tile ``index``'s picture area."""
        row, column = divmod(index, self.columns)
        left, top = column * self.tile, row * (self.tile + _LABEL_HEIGHT)
        return left, top, left + self.tile, top + self.tile

    def scaled(self, factor: float) -> Layout:
        return Layout(self.count, self.columns, self.rows, max(48, int(self.tile * factor)))


def layout(count: int) -> Layout:
    """A near-square grid, tiles 192 px for a few series down to 96 px for many."""
    columns = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    tile = max(96, min(192, _MAX_WIDTH // columns))
    return Layout(count, columns, rows, tile)


def contact_sheet(tiles: Sequence[Tile], budget: int = SHEET_BUDGET) -> tuple[bytes, Layout]:
    """The sheet as a JPEG within ``budget`` bytes (tiles shrink if the lowest quality is not enough)."""
    grid = layout(len(tiles))
    while True:
        data = fit_budget(_draw(tiles, grid), budget)
        if len(data) <= budget or grid.tile <= 48:
            return data, grid
        grid = grid.scaled(0.8)


def _draw(tiles: Sequence[Tile], grid: Layout) -> Image:
    from PIL import Image, ImageDraw, ImageFont

    # Grey unless a series is in colour (ultrasound, photographs): a grey JPEG is a third smaller.
    mode = "RGB" if any(t.image is not None and t.image.mode != "L" for t in tiles) else "L"

    def ink(level: int) -> int | tuple[int, int, int]:
        return level if mode == "L" else (level, level, level)

    sheet = Image.new(mode, (grid.width, grid.height), ink(_BACKGROUND))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    for index, tile in enumerate(tiles):
        left, top, right, bottom = grid.picture_box(index)
        if tile.image is not None:
            picture = tile.image.convert(mode)
            # Fitted to the tile, small pictures enlarged too, so every tile reads at the same scale.
            scale = (grid.tile - 2) / max(picture.size)
            fitted = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
            if fitted != picture.size:
                picture = picture.resize(fitted, Image.Resampling.LANCZOS)
            x = left + (grid.tile - picture.width) // 2
            y = top + (grid.tile - picture.height) // 2
            sheet.paste(picture, (x, y))
        else:
            text_width = draw.textlength(tile.placeholder, font=font)
            draw.text(
                (left + (grid.tile - text_width) / 2, top + grid.tile / 2 - 6),
                tile.placeholder,
                fill=ink(_MUTED),
                font=font,
            )
        label, detail = (
            _fit(draw, tile.label, font, grid.tile - 6),
            _fit(draw, tile.detail, font, grid.tile - 6),
        )
        draw.text((left + 3, bottom + 2), label, fill=ink(_TEXT), font=font)
        draw.text((left + 3, bottom + 15), detail, fill=ink(_MUTED), font=font)
        # A dark line between tiles, so that neighbouring pictures do not run together.
        draw.line([(right - 1, top), (right - 1, bottom + _LABEL_HEIGHT)], fill=ink(0))
    return sheet


def _fit(draw: ImageDraw, text: str, font: FreeTypeFont | ImageFont, width: int) -> str:
    """``text`` cut to ``width`` pixels, with an ellipsis when cut."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
