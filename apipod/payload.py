"""The job payload: how stored inputs and results refer to stored files, and how stored
inputs become call arguments. The front end and the worker both use this module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apipod.endpoint import EndpointSpec, Param

#: The key that marks a stored-file reference inside stored inputs and results.
FILE_KEY = "$file"


def media_arguments(
    spec: EndpointSpec, values: dict[str, Any], load: Callable[[Param, Any], Any]
) -> dict[str, Any]:
    """The media arguments of a call: ``load(param, value)`` for each value given (each
    item of a list), the parameter's default for a value not given."""
    out: dict[str, Any] = {}
    for param in spec.media_params:
        value = values.get(param.name)
        if value is None:
            out[param.name] = None if param.required else param.default
        elif isinstance(value, list):
            out[param.name] = [load(param, item) for item in value]
        else:
            out[param.name] = load(param, value)
    return out
