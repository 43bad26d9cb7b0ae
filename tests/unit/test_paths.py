"""dicomweb/paths.py: transfer syntaxes and rendered queries, built only from checked values."""

from __future__ import annotations

import pytest

from dicomweb_mcp.dicomweb.paths import rendered_query, transfer_syntax_value
from dicomweb_mcp.errors import InvalidInputError


@pytest.mark.parametrize(
    ("value", "ok"), [("*", True), ("1.2.840.10008.1.2.1", True), ("**", False), ("jpeg", False)]
)
def test_transfer_syntax_is_a_uid_or_star(value: str, ok: bool) -> None:
    if ok:
        assert transfer_syntax_value(value) == value
    else:
        with pytest.raises(InvalidInputError, match="transfer_syntax"):
            transfer_syntax_value(value)


@pytest.mark.parametrize(
    ("arguments", "query"),
    [
        (("image/jpeg", None, None, None), ""),
        (("image/png", 90, None, None), "?quality=90"),
        (("image/jpeg", None, (512, 256), None), "?viewport=512,256"),
        (("image/jpeg", None, None, (-600.0, 1500.0, "linear")), "?window=-600,1500,linear"),
        (
            ("image/png", 1, (1, 1), (40.5, 400.0, "sigmoid")),
            "?quality=1&viewport=1,1&window=40.5,400,sigmoid",
        ),
    ],
)
def test_rendered_queries(arguments: tuple, query: str) -> None:  # type: ignore[type-arg]
    assert rendered_query(*arguments) == query


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("image/gif", None, None, None), "media_type"),
        (("image/png", 0, None, None), "quality 0"),
        (("image/png", 101, None, None), "quality 101"),
        (("image/png", None, (0, 10), None), "at least 1x1"),
        (("image/png", None, (10, -1), None), "at least 1x1"),
        (("image/png", None, None, (1.0, 2.0, "cubic")), "linear or sigmoid"),
    ],
)
def test_bad_rendered_arguments_are_refused(arguments: tuple, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidInputError, match=message):
        rendered_query(*arguments)
