"""JSON texts are measured before they are parsed: values and depth from the structural
characters outside strings (issue 22: a 10 MB body of ``[],`` built 613 MB)."""

from __future__ import annotations

import pytest

from apipod.endpoint import build_spec, coerce_form_value
from apipod.errors import InputError
from apipod.jsonlimits import MAX_DEPTH, MAX_VALUES, json_shape


def test_values_and_depth_are_counted_outside_strings() -> None:
    shape = json_shape(b'{"a": [1, 2, {"b": "[[[,,,{{"}], "c": "x\\"[,"}')
    assert (shape.values, shape.depth) == (7, 3)
    assert json_shape("[]").depth == 1 and json_shape('",[,]"').depth == 0


def test_too_many_values_are_refused_before_parsing() -> None:
    json_shape(b"[" + b"0," * (MAX_VALUES - 3) + b"0]")
    with pytest.raises(InputError, match="1,000,000 values"):
        json_shape(b'{"zz":[' + b"[]," * MAX_VALUES + b"[]]}")


def test_deep_nesting_is_refused_before_parsing() -> None:
    json_shape("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    with pytest.raises(InputError, match="deeper than 64"):
        json_shape("[" * (MAX_DEPTH + 1))


def test_json_text_in_a_form_field_is_measured_too() -> None:
    def takes(items: list[list[int]]) -> int:
        return len(items)

    (param,) = build_spec(takes, "/takes", methods=["POST"]).params
    assert coerce_form_value(param, ["[[1], [2]]"]) == [[1], [2]]
    with pytest.raises(InputError, match="values"):
        coerce_form_value(param, ["[" + "[]," * MAX_VALUES + "[]]"])
