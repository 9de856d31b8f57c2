"""OpenAPI for endpoints whose body we parse ourselves (JSON, urlencoded or multipart).

Swagger UI shows an upload button per media parameter (multipart, ``format: binary``) and
a JSON/form body for the rest. ``job_progress`` is never part of the schema.
"""

from __future__ import annotations

from typing import Any

from apipod.endpoint import EndpointSpec, Param

_MEDIA_JSON = {
    "type": "string",
    "description": "base64 string, data: URL, or http(s) URL of the file",
}
_BINARY = {"type": "string", "format": "binary"}

FILE_MODEL_SCHEMA = {
    "title": "FileModel",
    "type": "object",
    "properties": {
        "file_name": {"type": "string"},
        "content_type": {"type": "string"},
        "content": {"type": "string", "description": "base64-encoded bytes"},
    },
    "required": ["file_name", "content_type", "content"],
}

JOB_RESULT_SCHEMA = {
    "title": "JobResult",
    "type": "object",
    "properties": {
        "job_id": {"type": "string"},
        "status": {
            "type": "string",
            "enum": ["queued", "processing", "finished", "failed", "timeout", "cancelled"],
        },
        "result": {"description": "the endpoint's return value, once finished"},
        "error": {"type": "string"},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "message": {"type": "string"},
        "metrics": {"type": "object", "additionalProperties": True},
        "links": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["job_id", "status"],
}


def operation_extra(
    spec: EndpointSpec, queued: bool, method: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``openapi_extra`` for the route of ``method``, and the component schemas it uses.
    GET reads its inputs from the query string; other methods from the body."""
    schema = spec.input_model.model_json_schema(ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = dict(schema.pop("$defs", {}))
    properties: dict[str, Any] = dict(schema.get("properties", {}))
    required = [p.name for p in spec.params if p.required]
    extra: dict[str, Any] = {"responses": _responses(queued)}
    if method == "GET":
        extra["parameters"] = _query_parameters(spec, properties, required)
        return extra, components
    extra["requestBody"] = _request_body(spec, properties, required)
    _document_original_shapes(extra["requestBody"], spec, properties, components)
    return extra, components


def _request_body(
    spec: EndpointSpec, properties: dict[str, Any], required: list[str]
) -> dict[str, Any]:
    json_props = dict(properties)
    form_props = dict(properties)
    for param in spec.media_params:
        json_props[param.name] = _maybe_list(param, _MEDIA_JSON)
        form_props[param.name] = _maybe_list(param, _BINARY)
    content = {
        "application/json": {"schema": _object(json_props, required)},
        "multipart/form-data": {"schema": _object(form_props, required)},
        "application/x-www-form-urlencoded": {"schema": _object(json_props, required)},
    }
    return {"required": bool(required), "content": content}


def _query_parameters(
    spec: EndpointSpec, properties: dict[str, Any], required: list[str]
) -> list[dict[str, Any]]:
    params = []
    for param in spec.params:
        schema = properties.get(param.name) or _maybe_list(param, _MEDIA_JSON)
        params.append(
            {
                "name": param.name,
                "in": "query",
                "required": param.name in required,
                "schema": schema,
            }
        )
    return params


def _maybe_list(param: Param, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": schema} if param.is_list else dict(schema)


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _responses(queued: bool) -> dict[str, Any]:
    ok = {"description": "A JobResult (status queued, or the finished job with ?wait=)"}
    if queued:
        ok["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/JobResult"}}}
    else:
        ok = {"description": "The endpoint's result as JSON; files as FileModel objects"}
    responses: dict[str, Any] = {"200": ok, "413": {"description": "Upload too large"}}
    if queued:
        responses["429"] = {"description": "Queue full; retry after the Retry-After seconds"}
    return responses


JSON_ALSO_ACCEPTED = (
    "Also accepted as a JSON object of the parameters: files as base64, a data: URL, an "
    "http(s) URL or a FileModel object; a model parameter as a nested object."
)


def _document_original_shapes(
    body: dict[str, Any],
    spec: EndpointSpec,
    properties: dict[str, Any],
    components: dict[str, Any],
) -> None:
    """The shapes the original APIPod's clients send: a union of file and other types
    takes either, and in forms a model parameter's fields come flattened (a JSON text of
    the whole object in a field named after the parameter is accepted too).

    An endpoint with file or model parameters documents only the form encodings, as the
    original did: clients generated from the schema (fastsdk) prefer JSON when it is
    listed and then can neither upload files nor send a model's fields flattened. JSON
    is still accepted; the description says how.
    """
    flattened = any(p.is_model and not p.is_list for p in spec.params)
    if spec.media_params or flattened:
        body["content"].pop("application/json", None)
        body["description"] = JSON_ALSO_ACCEPTED
    for media in body["content"].values():
        schema = media["schema"] = {**media["schema"]}  # content types may share one
        schema["properties"] = dict(schema["properties"])
        for param in spec.media_params:
            if param.plain is not None:
                file_schema = schema["properties"][param.name]
                schema["properties"][param.name] = {"anyOf": [file_schema, properties[param.name]]}
        for param in spec.params:
            if param.is_model and not param.is_list:  # only form encodings are left
                _flatten_model(schema, param, properties[param.name], components, spec)


def _flatten_model(
    schema: dict[str, Any],
    param: Param,
    param_schema: dict[str, Any],
    components: dict[str, Any],
    spec: EndpointSpec,
) -> None:
    model = components.get(_ref_name(param_schema) or "")
    if model is None:
        return
    own = schema["properties"].pop(param.name)
    flat = {k: v for k, v in model.get("properties", {}).items() if spec.param(k) is None}
    schema["properties"].update(flat)
    required = [name for name in schema.get("required", []) if name != param.name]
    if param.name in schema.get("required", []):
        required += [name for name in model.get("required", []) if name in flat]
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)
    if not flat:
        schema["properties"][param.name] = own


def _ref_name(schema: dict[str, Any]) -> str | None:
    """The component name a (possibly Optional) model schema refers to."""
    for candidate in [schema, *schema.get("anyOf", [])]:
        ref = candidate.get("$ref")
        if isinstance(ref, str):
            return ref.rsplit("/", 1)[-1]
    return None
