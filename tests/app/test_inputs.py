"""Synchronous mode, inputs: one endpoint, three encodings (JSON, urlencoded, multipart);
scalars, pydantic models, lists, Optional, and media from every accepted source."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest

from tests.app.support import b64, data_url, media_server, mp4_bytes, png_bytes, wav_bytes

ENCODINGS = ("json", "form", "multipart")

PNG = png_bytes()
BIG_PNG = png_bytes(32, seed=1)
WAV = wav_bytes()
MP4 = mp4_bytes()


def _form_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def send(client: httpx.Client, path: str, fields: dict[str, Any], encoding: str) -> httpx.Response:
    """POST ``fields`` as a JSON object, an urlencoded form or a multipart form.

    In forms a list value repeats the field; dicts (pydantic models) travel as JSON text.
    """
    if encoding == "json":
        return client.post(path, json=fields)
    texts = {
        name: [_form_text(item) for item in (value if isinstance(value, list) else [value])]
        for name, value in fields.items()
    }
    if encoding == "form":
        return client.post(path, data=texts)
    parts = [(name, (None, text)) for name, values in texts.items() for text in values]
    return client.post(path, files=parts)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def media_error(response: httpx.Response, field: str) -> str:
    """Assert a 422 naming ``field`` and return its message."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert [e["loc"] for e in detail] == [["body", field]]
    assert field in detail[0]["msg"]
    return detail[0]["msg"]


# --- scalars ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_scalars_in_every_encoding(basic: httpx.Client, encoding: str) -> None:
    fields = {"name": "ada", "count": 3, "ratio": 0.25, "flag": True}
    response = send(basic, "/scalars", fields, encoding)
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "ada", "count": 3, "ratio": 0.25, "flag": True}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_omitted_scalars_take_their_defaults(basic: httpx.Client, encoding: str) -> None:
    response = send(basic, "/scalars", {"name": "x"}, encoding)
    assert response.json() == {"name": "x", "count": 1, "ratio": 0.5, "flag": False}


@pytest.mark.parametrize(("text", "expected"), [("false", False), ("0", False), ("1", True)])
def test_form_booleans_are_parsed(basic: httpx.Client, text: str, expected: bool) -> None:
    response = basic.post("/scalars", data={"name": "b", "flag": text})
    assert response.json()["flag"] is expected


@pytest.mark.parametrize("encoding", ["form", "multipart"])
def test_empty_form_field_uses_the_parameter_default(basic: httpx.Client, encoding: str) -> None:
    # HTML forms send empty strings for untouched inputs; FastAPI's Form() treats "" as
    # "not given" and uses the default. A parameter with a default must not become a 422.
    fields = {"name": "e", "count": "", "ratio": "", "flag": ""}
    response = send(basic, "/scalars", fields, encoding)
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "e", "count": 1, "ratio": 0.5, "flag": False}


def test_unknown_query_parameters_are_ignored(basic: httpx.Client) -> None:
    response = basic.post("/scalars?details_id=abc", json={"name": "q"})
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "q", "count": 1, "ratio": 0.5, "flag": False}
    form = basic.post("/scalars?details_id=abc&other=1", data={"name": "q"})
    assert form.json()["name"] == "q"


def test_unknown_body_keys_are_ignored(basic: httpx.Client) -> None:
    response = basic.post("/scalars", json={"name": "q", "details_id": "abc"})
    assert response.json() == {"name": "q", "count": 1, "ratio": 0.5, "flag": False}


def test_query_fills_parameters_and_the_body_wins(basic: httpx.Client) -> None:
    response = basic.post("/scalars?name=query&count=9", json={"name": "body"})
    assert response.json() == {"name": "body", "count": 9, "ratio": 0.5, "flag": False}


def test_get_endpoint_reads_the_query_string(basic: httpx.Client) -> None:
    assert basic.get("/info", params={"verbose": "true"}).json()["verbose"] is True
    assert basic.get("/info").json()["verbose"] is False


def test_get_alias_reads_repeated_query_values_into_a_list(routes: httpx.Client) -> None:
    response = routes.get("/get-alias", params=[("n", "1"), ("n", "2"), ("label", "x")])
    assert response.json() == {"n": [1, 2], "label": "x"}
    missing = routes.get("/get-alias")
    assert missing.status_code == 422
    assert [e["loc"] for e in missing.json()["detail"]] == [["body", "n"]]


def test_post_alias_sync_function(routes: httpx.Client) -> None:
    assert routes.post("/post-alias", json={"a": 40}).json() == {"sum": 42}
    assert routes.get("/post-alias").status_code == 405


def test_methods_option_and_path_without_leading_slash(routes: httpx.Client) -> None:
    assert routes.get("/both", params={"x": 3}).json() == {"x": 3}
    assert routes.post("/both", json={"x": 4}).json() == {"x": 4}


def test_async_function_endpoint(basic: httpx.Client) -> None:
    response = basic.post("/async", json={"delay": 0.01})
    assert response.status_code == 200
    assert response.json()["async"] is True


def test_queue_options_are_accepted_and_the_call_stays_synchronous(routes: httpx.Client) -> None:
    # queue_size / use_queue=True are queue-mode options; in dedicated mode the result
    # itself comes back, not a JobResult.
    assert routes.post("/options", json={"x": 5}).json() == {"x": 5}


def test_bad_scalar_is_a_422_naming_the_field(basic: httpx.Client) -> None:
    response = basic.post("/scalars", data={"name": "a", "count": "many"})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "count"]
    assert error["type"] == "int_parsing"
    assert error["input"] == "many"


def test_an_upload_to_an_unannotated_parameter_says_which_media_type_to_use(
    basic: httpx.Client,
) -> None:
    image = basic.post("/scalars", files={"name": ("cat.png", png_bytes(), "image/png")})
    assert image.status_code == 422 and image.headers["content-type"] == "application/json"
    (error,) = image.json()["detail"]
    assert error["loc"] == ["body", "name"]
    assert error["msg"] == (
        "field 'name' received a file upload but is not annotated with a media type:"
        " annotate it `name: ImageFile` (or AudioFile/VideoFile/MediaFile)"
    )
    files = [("tags", ("a.wav", wav_bytes(), "audio/wav")), ("tags", ("b.wav", b"x", "audio/wav"))]
    (listed,) = basic.post("/lists", files=files).json()["detail"]
    assert "annotate it `tags: list[AudioFile]` (or ImageFile/VideoFile/MediaFile)" in listed["msg"]
    other = basic.post("/scalars", files={"name": ("a.bin", b"\0", "application/octet-stream")})
    assert (
        "`name: MediaFile` (or ImageFile/AudioFile/VideoFile)" in other.json()["detail"][0]["msg"]
    )


# --- pydantic models, lists, Optional ------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_pydantic_model_parameter(basic: httpx.Client, encoding: str) -> None:
    response = send(basic, "/model", {"point": {"x": 1, "y": 2}, "scale": 3}, encoding)
    assert response.status_code == 200, response.text
    assert response.json() == {"x": 3, "y": 6}


def test_invalid_model_reports_nested_locations(basic: httpx.Client) -> None:
    response = basic.post("/model", json={"point": {"x": "a"}})
    assert response.status_code == 422
    locs = [e["loc"] for e in response.json()["detail"]]
    assert locs == [["body", "point", "x"], ["body", "point", "y"]]


def test_model_given_as_broken_json_text_in_a_form(basic: httpx.Client) -> None:
    response = basic.post("/model", data={"point": "{not json"})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "point"]]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_lists_fill_from_arrays_or_repeated_fields(basic: httpx.Client, encoding: str) -> None:
    fields = {"tags": ["a", "b", "c"], "numbers": [1, 2]}
    response = send(basic, "/lists", fields, encoding)
    assert response.status_code == 200, response.text
    assert response.json() == {"tags": ["a", "b", "c"], "numbers": [1, 2], "note": None}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_single_value_fills_a_list(basic: httpx.Client, encoding: str) -> None:
    fields: dict[str, Any] = {"tags": ["only"], "note": "n"}
    response = send(basic, "/lists", fields, encoding)
    assert response.json() == {"tags": ["only"], "numbers": None, "note": "n"}


def test_missing_required_list_is_a_422(basic: httpx.Client) -> None:
    response = basic.post("/lists", json={})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert (error["type"], error["loc"]) == ("missing", ["body", "tags"])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_list_of_models_and_optional_model(routes: httpx.Client, encoding: str) -> None:
    fields = {"points": [{"x": 1, "y": 0}, {"x": 2, "y": 0}], "origin": {"x": 10, "y": 0}}
    response = send(routes, "/points", fields, encoding)
    assert response.status_code == 200, response.text
    assert response.json() == {"sum_x": 13, "n": 2}
    without = send(routes, "/points", {"points": [{"x": 1, "y": 1}]}, encoding)
    assert without.json() == {"sum_x": 1, "n": 1}


# --- media: sources --------------------------------------------------------------------------


def test_image_from_a_multipart_part(basic: httpx.Client) -> None:
    response = basic.post("/image", files={"image": ("a.png", PNG, "image/png")})
    assert response.json() == {"content_type": "image/png", "size": len(PNG), "progress": 0.5}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b64(PNG), id="base64"),
        pytest.param(data_url(PNG, "image/png"), id="data-url"),
        pytest.param(
            {"file_name": "p.png", "content_type": "image/png", "content": b64(PNG)},
            id="file-model",
        ),
        pytest.param(
            {
                "file_name": "p.png",
                "content_type": "image/png",
                "content": data_url(PNG, "image/png"),
            },
            id="file-model-data-url",
        ),
    ],
)
def test_image_from_json_values(basic: httpx.Client, value: Any) -> None:
    response = basic.post("/image", json={"image": value})
    assert response.status_code == 200, response.text
    assert response.json() == {"content_type": "image/png", "size": len(PNG), "progress": 0.5}


def test_image_as_text_fields_in_forms(basic: httpx.Client) -> None:
    form = basic.post("/image", data={"image": b64(BIG_PNG)})
    assert form.json()["size"] == len(BIG_PNG)
    part = basic.post("/image", files={"image": (None, data_url(BIG_PNG, "image/png"))})
    assert part.json()["size"] == len(BIG_PNG)


def test_file_model_keeps_the_client_file_name(media: httpx.Client) -> None:
    value = {"file_name": "cat.png", "content_type": "image/png", "content": b64(PNG)}
    response = media.post("/image", json={"image": value})
    assert response.json() == {
        "kind": "ImageFile",
        "content_type": "image/png",
        "file_name": "cat.png",
        "size": len(PNG),
        "sha256": sha(PNG),
    }


def test_last_multipart_part_wins_for_a_single_media_field(basic: httpx.Client) -> None:
    assert len(PNG) != len(BIG_PNG)
    files = [("image", ("1.png", PNG, "image/png")), ("image", ("2.png", BIG_PNG, "image/png"))]
    assert basic.post("/image", files=files).json()["size"] == len(BIG_PNG)
    files.reverse()
    assert basic.post("/image", files=files).json()["size"] == len(PNG)


def test_repeated_parts_fill_a_media_list(basic: httpx.Client) -> None:
    files = [("images", ("1.png", PNG, "image/png")), ("images", ("2.png", BIG_PNG, "image/png"))]
    assert basic.post("/images", files=files).json() == [len(PNG), len(BIG_PNG)]


def test_media_list_from_json_and_urlencoded(basic: httpx.Client) -> None:
    values = [b64(PNG), data_url(BIG_PNG, "image/png")]
    assert basic.post("/images", json={"images": values}).json() == [len(PNG), len(BIG_PNG)]
    assert basic.post("/images", data={"images": values}).json() == [len(PNG), len(BIG_PNG)]


def test_media_list_mixes_parts_and_urls(media: httpx.Client) -> None:
    with media_server({"/clip.wav": (WAV, "audio/wav")}) as server:
        files = [
            ("clips", ("first.wav", WAV, "audio/wav")),
            ("clips", (None, server.url("/clip.wav"))),
        ]
        response = media.post("/clips", files=files)
    assert response.status_code == 200, response.text
    assert [(c["kind"], c["sha256"]) for c in response.json()] == [("AudioFile", sha(WAV))] * 2


def test_missing_required_media_is_a_422(basic: httpx.Client) -> None:
    for response in (
        basic.post("/image", json={}),
        basic.post("/image", json={"image": None}),
        basic.post("/images", data={"other": "x"}),
    ):
        assert response.status_code == 422
        (error,) = response.json()["detail"]
        assert error["type"] == "missing"
        assert error["loc"][0] == "body"


def test_optional_media(media: httpx.Client) -> None:
    assert media.post("/optional", json={"note": "n"}).json() == {"image": None, "note": "n"}
    assert media.post("/optional", data={"image": "", "note": "m"}).json() == {
        "image": None,
        "note": "m",
    }
    given = media.post("/optional", files={"image": ("o.png", PNG, "image/png")})
    assert given.json()["image"]["sha256"] == sha(PNG)


def test_audio_video_and_generic_files(media: httpx.Client) -> None:
    audio = media.post("/audio", json={"audio": data_url(WAV, "audio/wav")}).json()
    assert (audio["kind"], audio["size"], audio["sha256"]) == ("AudioFile", len(WAV), sha(WAV))
    video = media.post("/video", files={"video": ("v.mp4", MP4, "video/mp4")}).json()
    assert (video["kind"], video["file_name"], video["sha256"]) == ("VideoFile", "v.mp4", sha(MP4))
    assert video["content_type"] == "video/mp4"
    anything = media.post("/file", files={"file": ("notes.txt", b"hello", "text/plain")}).json()
    assert (anything["kind"], anything["size"], anything["file_name"]) == (
        "MediaFile",
        5,
        "notes.txt",
    )


def test_detected_content_type_fills_in_for_base64(media: httpx.Client) -> None:
    assert media.post("/image", json={"image": b64(PNG)}).json()["content_type"] == "image/png"
    assert media.post("/video", json={"video": b64(MP4)}).json()["content_type"] == "video/mp4"


def test_media_from_an_allow_listed_url(media: httpx.Client) -> None:
    files = {"/img.png": (BIG_PNG, "image/png"), "/v.mp4": (MP4, "video/mp4")}
    with media_server(files) as server:
        image = media.post("/image", json={"image": server.url("/img.png")})
        video = media.post("/video", data={"video": server.url("/v.mp4")})
        hits = list(server.hits)
    assert image.status_code == 200, image.text
    assert (image.json()["sha256"], image.json()["content_type"]) == (sha(BIG_PNG), "image/png")
    assert video.json()["sha256"] == sha(MP4)
    assert hits == ["/img.png", "/v.mp4"]


def test_loopback_url_is_refused_by_default(basic: httpx.Client) -> None:
    with media_server({"/img.png": (PNG, "image/png")}) as server:
        response = basic.post("/image", json={"image": server.url("/img.png")})
        hits = list(server.hits)
    message = media_error(response, "image")
    assert "media_url_allowlist" in message
    assert hits == []


def test_url_that_fails_to_download_is_a_422(media: httpx.Client) -> None:
    with media_server({}) as server:
        response = media.post("/image", json={"image": server.url("/missing.png")})
    media_error(response, "image")


# --- media: refusals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["/etc/passwd", "./image.png", "~/image.png", "../secret.png", "file:///etc/passwd"],
)
def test_local_paths_and_file_urls_are_refused(basic: httpx.Client, value: str) -> None:
    message = media_error(basic.post("/image", json={"image": value}), "image")
    assert "local file paths are not accepted" in message or "only http(s)" in message


def test_local_path_is_refused_in_a_form_and_for_generic_files(media: httpx.Client) -> None:
    message = media_error(media.post("/file", data={"file": "/etc/hostname"}), "file")
    assert "local file paths are not accepted" in message
    media_error(media.post("/file", json={"file": "file:///etc/hostname"}), "file")
    media_error(media.post("/file", json={"file": "ftp://example.com/x"}), "file")


def test_text_sent_as_an_image_is_refused(basic: httpx.Client) -> None:
    response = basic.post("/image", files={"image": ("a.txt", b"just some text", "text/plain")})
    assert "not a valid ImageFile" in media_error(response, "image")
    as_base64 = basic.post("/image", json={"image": b64(b"just some text")})
    assert "not a valid ImageFile" in media_error(as_base64, "image")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(("a.png", b"just some text", "image/png"), id="multipart"),
        pytest.param(
            {"file_name": "a.png", "content_type": "image/png", "content": b64(b"just some text")},
            id="file-model",
        ),
    ],
)
def test_text_named_like_an_image_is_refused(basic: httpx.Client, value: Any) -> None:
    # The file name and content type come from the client; the bytes decide the kind.
    if isinstance(value, tuple):
        response = basic.post("/image", files={"image": value})
    else:
        response = basic.post("/image", json={"image": value})
    assert "not a valid ImageFile" in media_error(response, "image")


def test_image_sent_as_audio_is_refused(media: httpx.Client) -> None:
    response = media.post("/audio", json={"audio": b64(PNG)})
    assert "not a valid AudioFile" in media_error(response, "audio")


@pytest.mark.parametrize(
    "value", ["not base64 at all!", "data:image/png;base64,@@@@", "data:image/png,raw"]
)
def test_invalid_base64_is_refused(basic: httpx.Client, value: str) -> None:
    media_error(basic.post("/image", json={"image": value}), "image")


def test_empty_file_is_refused(basic: httpx.Client) -> None:
    response = basic.post("/file", files={"file": ("e.bin", b"", "application/octet-stream")})
    assert "empty" in media_error(response, "file")


def test_every_bad_media_field_is_reported_at_once(media: httpx.Client) -> None:
    response = media.post("/nested", json={"image": "/etc/passwd", "audio": "file:///x"})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "image"], ["body", "audio"]]
