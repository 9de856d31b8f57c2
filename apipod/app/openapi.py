"""OpenAPI for endpoints whose body we parse ourselves (JSON, urlencoded or multipart).

Media parameters are described in every request body: in multipart as a binary part
(``format: binary``: Swagger UI shows an upload button), in JSON and urlencoded bodies as
``anyOf`` a FileModel component titled per media kind (``ImageFileModel``, ...: how
fastsdk and apipod-registry recognise file parameters) and a string (base64, ``data:``
URL or http(s) URL). Endpoints with media list multipart first. Queued endpoints document
``wait`` and ``inline`` and answer a JobResult. ``job_progress`` is never in the schema.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from media_toolkit import AudioFile, ImageFile, VideoFile

from apipod.endpoint import EndpointSpec, Param

#: The tags of the built-in routes, in the order /docs lists them, after the user's own.
JOBS_TAG, FILES_TAG, OPERATIONS_TAG = "jobs", "files", "operations"
BUILTIN_TAGS = (JOBS_TAG, FILES_TAG, OPERATIONS_TAG)

_MEDIA_STRING = {
    "type": "string",
    "description": "base64 string, data: URL, or http(s) URL of the file",
}
_BINARY = {"type": "string", "format": "binary"}
_FILE_MODEL_KINDS = ((ImageFile, "ImageFileModel"), (AudioFile, "AudioFileModel"))
_FILE_MODEL_KINDS += ((VideoFile, "VideoFileModel"),)


def _file_model_schema(title: str) -> dict[str, Any]:
    return {
        "title": title,
        "type": "object",
        "description": "A file: its name, content type, and content as base64 (or, in "
        "results past inline_result_max_mb per answer, an absolute URL to fetch it from)",
        "properties": {
            "file_name": {"type": "string"},
            "content_type": {"type": "string"},
            "content": {"type": "string", "description": "base64-encoded bytes, or a URL"},
        },
        "required": ["file_name", "content_type", "content"],
    }


FILE_MODEL_SCHEMAS = {
    title: _file_model_schema(title)
    for title in ["FileModel", *(name for _, name in _FILE_MODEL_KINDS)]
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
        "links": {
            "type": "object",
            "properties": {
                "status": {"type": "string"},
                "cancel": {"type": "string"},
                "stream": {"type": "string"},
                "files": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "/files/<job_id>/<name> of every stored input and result",
                },
            },
            "additionalProperties": True,
        },
    },
    "required": ["job_id", "status"],
}


def user_endpoints_first(schema: dict[str, Any], user_paths: Collection[str]) -> None:
    """Reorder ``schema["paths"]``: the user's endpoints first, as declared, then the
    built-in routes by tag (jobs, files, operations). Swagger UI and ReDoc list the tag
    groups in the order their operations first appear."""

    def rank(item: tuple[str, dict[str, Any]]) -> int:
        path, operations = item
        if path in user_paths:
            return -1
        tags = {
            tag for op in operations.values() if isinstance(op, dict) for tag in op.get("tags", ())
        }
        return min(
            (BUILTIN_TAGS.index(t) for t in tags if t in BUILTIN_TAGS), default=len(BUILTIN_TAGS)
        )

    schema["paths"] = dict(sorted(schema.get("paths", {}).items(), key=rank))


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
    query = _queue_parameters() if queued else []
    if method == "GET":
        extra["parameters"] = _query_parameters(spec, properties, required) + query
        return extra, components
    if query:
        extra["parameters"] = query
    extra["requestBody"] = _request_body(spec, properties, required)
    _document_original_shapes(extra["requestBody"], spec, properties, components)
    return extra, components


def _request_body(
    spec: EndpointSpec, properties: dict[str, Any], required: list[str]
) -> dict[str, Any]:
    json_props = dict(properties)
    form_props = dict(properties)
    for param in spec.media_params:
        json_props[param.name] = _maybe_list(param, media_json_schema(param))
        form_props[param.name] = _maybe_list(param, _BINARY)
    multipart = {"schema": _object(form_props, required)}
    as_json = {"schema": _object(json_props, required)}
    if not spec.media_params:
        content = {
            "application/json": as_json,
            "application/x-www-form-urlencoded": as_json,
            "multipart/form-data": multipart,
        }
        return {"required": bool(required), "content": content}
    # Media endpoints: multipart first (Swagger UI shows the upload form). Clients built
    # from the schema (fastsdk, apipod-registry 0.1) take application/json whenever it
    # is listed, and then send files as JSON they cannot encode; so the JSON body of a
    # media endpoint (still accepted) is described under x-apipod-json instead.
    content = {"multipart/form-data": multipart, "application/x-www-form-urlencoded": as_json}
    return {"required": bool(required), "content": content, "x-apipod-json": as_json}


def media_json_schema(param: Param) -> dict[str, Any]:
    """A media parameter in a JSON or urlencoded body: its kind's FileModel or a string."""
    ref = {"$ref": f"#/components/schemas/{file_model_title(param.media_cls)}"}
    return {"anyOf": [ref, dict(_MEDIA_STRING)]}


def file_model_title(media_cls: type | None) -> str:
    """``ImageFileModel``, ``AudioFileModel``, ``VideoFileModel`` or ``FileModel``."""
    for cls, title in _FILE_MODEL_KINDS:
        if media_cls is not None and issubclass(media_cls, cls):
            return title
    return "FileModel"


def _queue_parameters() -> list[dict[str, Any]]:
    wait = {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": "long-poll: answer once the job ended, or after this many seconds "
        "(at most 60); without it the answer is the queued job",
        "schema": {"type": "number", "minimum": 0, "maximum": 60},
    }
    inline = {
        "name": "inline",
        "in": "query",
        "required": False,
        "description": "how result files appear: auto (base64 up to inline_result_max_mb "
        "per answer, then an absolute URL of /files/...), all (base64 whatever the size), none (URL)",
        "schema": {"type": "string", "enum": ["auto", "all", "none"], "default": "auto"},
    }
    return [wait, inline]


def _query_parameters(
    spec: EndpointSpec, properties: dict[str, Any], required: list[str]
) -> list[dict[str, Any]]:
    params = []
    for param in spec.params:
        schema = properties.get(param.name) or _maybe_list(param, _MEDIA_STRING)
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
