"""The one file-name sanitiser."""

from __future__ import annotations

import pytest

from apipod.media.names import safe_name


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("../../../../tmp/x.png", "x.png"),
        ("..\\..\\evil.exe", "evil.exe"),
        ("a\x00b\x1f\x7fc.png", "abc.png"),
        ("bad\ud800name.png", "badname.png"),
        ("..", "file"),
        ("", "file"),
        (None, "file"),
        ("dir/", "file"),
        ("x" * 300 + ".png", "x" * 196 + ".png"),
    ],
)
def test_safe_name(given: str | None, expected: str) -> None:
    assert safe_name(given) == expected
