"""Synchronous mode, docs: ``/openapi.json`` describes the three encodings, media uploads
as binary parts, and ``info.apipod``; ``/docs`` serves Swagger UI."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import apipod
from apipod.app.openapi import BUILTIN_TAGS
from apipod.loader import load_app
from tests.app.support import served
from tests.helpers import SERVICES

BODY_TYPES = ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"]
BINARY = {"type": "string", "format": "binary"}
ANY_SCALE = {"type": "integer", "title": "Scale", "default": 2}


@pytest.fixture(scope="module")
def schema(basic: httpx.Client) -> dict[str, Any]:
    response = basic.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture(scope="module")
def media_schema() -> dict[str, Any]:
    with served("sync_media") as client:
        return client.get("/openapi.json").json()


@pytest.fixture(scope="module")
def routes_schema() -> dict[str, Any]:
    with served("sync_routes") as client:
        return client.get("/openapi.json").json()


@pytest.fixture(scope="module")
def queue_schema() -> dict[str, Any]:
    """A queue-mode service's schema, built as /openapi.json builds it, with every
    warning an error (FastAPI warns of duplicate operation ids)."""
    app = load_app(str(SERVICES / "queue_ok.py"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return app.openapi()


MEDIA_PATHS = ("/image", "/images", "/file")
FILE_MODELS = ("FileModel", "ImageFileModel", "AudioFileModel", "VideoFileModel")


def body(schema: dict[str, Any], path: str, content_type: str) -> dict[str, Any]:
    """The body schema of ``content_type`` (a media endpoint's JSON: ``x-apipod-json``)."""
    request_body = schema["paths"][path]["post"]["requestBody"]
    if content_type not in request_body["content"] and content_type == "application/json":
        return request_body["x-apipod-json"]["schema"]
    return request_body["content"][content_type]["schema"]


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_info_names_the_compute_mode_and_version(schema: dict[str, Any]) -> None:
    assert schema["info"]["apipod"] == {"compute": "dedicated", "version": apipod.__version__}
    assert schema["info"]["title"] == "sync-basic"


def test_plain_endpoints_document_three_body_types_file_and_model_ones_the_forms(
    schema: dict[str, Any],
) -> None:
    for path in ("/scalars", "/lists"):
        content = schema["paths"][path]["post"]["requestBody"]["content"]
        assert list(content)[0] == "application/json", path
        assert sorted(content) == sorted(BODY_TYPES), path
    # As the original APIPod documented them, so that schema-driven clients (fastsdk)
    # upload files and send a model's fields flattened; JSON is accepted all the same.
    for path in ("/model", "/image", "/images", "/file"):
        request_body = schema["paths"][path]["post"]["requestBody"]
        assert sorted(request_body["content"]) == sorted(BODY_TYPES[1:]), path
        assert "JSON" in request_body["description"]


def test_media_endpoints_list_multipart_first(schema: dict[str, Any]) -> None:
    """Swagger UI shows the upload form first; fastsdk (which takes JSON whenever it is
    listed) sends files as multipart parts instead of JSON it cannot encode."""
    for path in MEDIA_PATHS:
        request_body = schema["paths"][path]["post"]["requestBody"]
        assert list(request_body["content"]) == [
            "multipart/form-data",
            "application/x-www-form-urlencoded",
        ], path
        assert request_body["x-apipod-json"]["schema"]["type"] == "object"


def test_media_parameter_is_a_binary_part_or_a_titled_file_model(schema: dict[str, Any]) -> None:
    multipart = body(schema, "/image", "multipart/form-data")
    assert multipart["properties"]["image"] == BINARY
    assert multipart["required"] == ["image"]
    for content_type in ("application/json", "application/x-www-form-urlencoded"):
        image = body(schema, "/image", content_type)["properties"]["image"]
        file_model, string = image["anyOf"]
        assert resolve(schema, file_model)["title"] == "ImageFileModel"
        assert string["type"] == "string" and "format" not in string


def test_media_list_is_an_array_of_binary_parts(schema: dict[str, Any]) -> None:
    images = body(schema, "/images", "multipart/form-data")["properties"]["images"]
    assert images == {"type": "array", "items": BINARY}
    as_json = body(schema, "/images", "application/json")["properties"]["images"]
    assert as_json["type"] == "array" and len(as_json["items"]["anyOf"]) == 2


def test_file_model_components_are_titled_per_kind(media_schema: dict[str, Any]) -> None:
    components = media_schema["components"]["schemas"]
    for title in FILE_MODELS:
        assert components[title]["title"] == title
        assert set(components[title]["required"]) == {"file_name", "content_type", "content"}
    for path, name, title in [
        ("/image", "image", "ImageFileModel"),
        ("/audio", "audio", "AudioFileModel"),
        ("/video", "video", "VideoFileModel"),
        ("/file", "file", "FileModel"),
    ]:
        form = body(media_schema, path, "application/x-www-form-urlencoded")
        assert form["properties"][name]["anyOf"][0]["$ref"].endswith("/" + title), path


def test_every_media_kind_is_binary(media_schema: dict[str, Any]) -> None:
    for path, name in [
        ("/image", "image"),
        ("/audio", "audio"),
        ("/video", "video"),
        ("/file", "file"),
    ]:
        assert body(media_schema, path, "multipart/form-data")["properties"][name] == BINARY
    optional = body(media_schema, "/optional", "multipart/form-data")
    assert optional["properties"]["image"] == BINARY
    assert "required" not in optional
    clips = body(media_schema, "/clips", "multipart/form-data")["properties"]["clips"]
    assert clips == {"type": "array", "items": BINARY}


def test_scalar_parameters_with_types_and_required(schema: dict[str, Any]) -> None:
    for content_type in BODY_TYPES:
        scalars = body(schema, "/scalars", content_type)
        props = scalars["properties"]
        assert scalars["required"] == ["name"]
        assert props["name"]["type"] == "string"
        assert (props["count"]["type"], props["count"]["default"]) == ("integer", 1)
        assert (props["ratio"]["type"], props["ratio"]["default"]) == ("number", 0.5)
        assert (props["flag"]["type"], props["flag"]["default"]) == ("boolean", False)


def test_model_parameter_fields_are_flattened_into_the_forms(schema: dict[str, Any]) -> None:
    component = schema["components"]["schemas"]["Point"]
    assert sorted(component["properties"]) == ["x", "y"]
    for content_type in BODY_TYPES[1:]:
        form = body(schema, "/model", content_type)
        assert form["properties"] == {**component["properties"], "scale": ANY_SCALE}
        assert form["required"] == ["x", "y"]


def test_every_ref_resolves(schema: dict[str, Any], media_schema: dict[str, Any]) -> None:
    for document in (schema, media_schema):
        found = list(refs(document))
        assert len(found) >= 5  # both documents have models and media: never vacuous
        for ref in found:
            assert ref.startswith("#/components/schemas/"), ref
            assert ref.rsplit("/", 1)[1] in document["components"]["schemas"], ref


def test_job_progress_appears_nowhere(
    schema: dict[str, Any], routes_schema: dict[str, Any]
) -> None:
    for document in (schema, routes_schema):
        text = json.dumps(document)
        assert "job_progress" not in text
        assert "JobProgress" not in text
    progress = routes_schema["paths"]["/progress"]["post"]["requestBody"]["content"]
    assert list(progress["application/json"]["schema"]["properties"]) == ["steps"]


def test_summary_and_tags(schema: dict[str, Any], routes_schema: dict[str, Any]) -> None:
    scalars = schema["paths"]["/scalars"]["post"]
    assert (scalars["summary"], scalars["tags"]) == ("Echo scalars", ["demo"])
    options = routes_schema["paths"]["/options"]["post"]
    assert (options["summary"], options["tags"]) == ("Options summary", ["alpha", "beta"])


def test_get_endpoint_documents_query_parameters(
    schema: dict[str, Any], routes_schema: dict[str, Any]
) -> None:
    info = schema["paths"]["/info"]
    assert list(info) == ["get"]
    (verbose,) = info["get"]["parameters"]
    assert (verbose["name"], verbose["in"], verbose["required"]) == ("verbose", "query", False)
    assert verbose["schema"]["type"] == "boolean"
    params = {p["name"]: p for p in routes_schema["paths"]["/get-alias"]["get"]["parameters"]}
    assert sorted(params) == ["label", "n"]
    assert params["n"]["required"] is True
    assert params["n"]["schema"]["type"] == "array"


def test_methods_and_aliases_are_documented(routes_schema: dict[str, Any]) -> None:
    paths = routes_schema["paths"]
    assert sorted(paths["/both"]) == ["get", "post"]
    assert list(paths["/post-alias"]) == ["post"]
    assert list(paths["/get-alias"]) == ["get"]


def test_operation_ids_are_unique(routes_schema: dict[str, Any]) -> None:
    # OpenAPI: "The id MUST be unique among all operations described in the API";
    # client generators key methods by it. methods=["GET", "POST"] gives two operations.
    operations = [
        (path, method, op["operationId"])
        for path, item in routes_schema["paths"].items()
        for method, op in item.items()
    ]
    ids = [op_id for _, _, op_id in operations]
    duplicates = [(p, m, i) for p, m, i in operations if ids.count(i) > 1]
    assert duplicates == []


def operation_ids(schema: dict[str, Any]) -> list[str]:
    return [op["operationId"] for item in schema["paths"].values() for op in item.values()]


def test_queue_mode_operation_ids_are_unique(queue_schema: dict[str, Any]) -> None:
    ids = operation_ids(queue_schema)
    assert len(ids) == len(set(ids)), ids
    files = queue_schema["paths"]["/files/{job_id}/{name}"]
    assert sorted(files) == ["get", "head"]  # both documented, each with its own id


def test_docs_list_the_users_endpoints_first_then_the_tagged_built_ins(
    queue_schema: dict[str, Any], schema: dict[str, Any]
) -> None:
    """Swagger UI and ReDoc show tag groups in the order operations first appear."""
    for document, first in ((queue_schema, "/noop"), (schema, "/scalars")):
        paths = list(document["paths"])
        tags = [op.get("tags", []) for p in paths for op in document["paths"][p].values()]
        builtin = [i for i, t in enumerate(tags) if set(t) & set(BUILTIN_TAGS)]
        assert paths[0] == first and builtin, paths
        assert builtin == list(range(builtin[0], len(tags))), paths  # all of them last
        assert all(len(t) == 1 and t[0] in BUILTIN_TAGS for t in tags[builtin[0] :]), tags
    seen = [
        t[0] for p in queue_schema["paths"].values() for op in p.values() if (t := op.get("tags"))
    ]
    assert list(dict.fromkeys(seen)) == list(BUILTIN_TAGS)
    by_path = {p: item[next(iter(item))].get("tags") for p, item in queue_schema["paths"].items()}
    assert by_path["/status/{job_id}"] == by_path["/stream/{job_id}"] == ["jobs"]
    assert by_path["/files/{job_id}/{name}"] == ["files"]
    assert by_path["/health"] == by_path["/metrics"] == by_path["/jobs"] == ["operations"]


def test_docs_serve_swagger_ui(basic: httpx.Client) -> None:
    response = basic.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in response.text
    assert "/openapi.json" in response.text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_the_server_itself(basic: httpx.Client, page: str) -> None:
    html = basic.get(page).text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    for url in assets:
        assert url.startswith("/docs-assets/"), f"{page} loads {url} from elsewhere"
        asset = basic.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert "cdn" not in html.lower() and "fonts.googleapis" not in html


def test_unknown_docs_asset_is_a_json_404(basic: httpx.Client) -> None:
    response = basic.get("/docs-assets/../pyproject.toml")
    assert response.status_code == 404
    missing = basic.get("/docs-assets/nothing.js")
    assert missing.status_code == 404 and "detail" in missing.json()
