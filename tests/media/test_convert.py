"""Media adapters on real bytes: client values -> MediaPayload -> media-toolkit objects."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from media_toolkit import AudioFile, ImageFile, MediaFile, VideoFile
from pydantic import BaseModel
from starlette.datastructures import Headers, UploadFile

from apipod.errors import MediaError
from apipod.media.convert import MediaPayload, build_media, is_media_type, read_media
from apipod.media.urlpolicy import UrlPolicy
from tests.app.support import b64, data_url, media_server, mp4_bytes, png_bytes, wav_bytes

PNG = png_bytes(12, seed=5)
WAV = wav_bytes()
MP4 = mp4_bytes()
DEFAULT = UrlPolicy()
LOOPBACK = UrlPolicy(allowlist=("127.0.0.1/32",), timeout_s=5.0)


def upload(data: bytes, name: str, content_type: str) -> UploadFile:
    headers = Headers({"content-type": content_type})
    return UploadFile(file=io.BytesIO(data), filename=name, headers=headers)


# --- reading client values -----------------------------------------------------------------


def test_multipart_part() -> None:
    payload = read_media(upload(PNG, "up.png", "image/png"), ImageFile, "image", DEFAULT)
    assert (payload.file_name, payload.content_type) == ("up.png", "image/png")
    assert payload.read_all() == PNG


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b64(PNG), id="base64"),
        pytest.param(base64.urlsafe_b64encode(PNG).decode().rstrip("="), id="urlsafe-unpadded"),
        pytest.param(base64.encodebytes(PNG).decode(), id="base64-with-newlines"),
        pytest.param("  " + data_url(PNG, "image/png") + "\n", id="data-url"),
        pytest.param(f"data:image/png;name=a.png;base64,{b64(PNG)}", id="data-url-params"),
        pytest.param(PNG, id="bytes"),
    ],
)
def test_encoded_values_decode_to_the_same_bytes(value: Any) -> None:
    payload = read_media(value, ImageFile, "image", DEFAULT)
    assert payload.read_all() == PNG
    assert payload.content_type == "image/png"


def test_file_model_dict_keeps_name_and_type() -> None:
    value = {"file_name": "m.png", "content_type": "image/png", "content": b64(PNG)}
    payload = read_media(value, ImageFile, "image", DEFAULT)
    assert (payload.file_name, payload.content_type, payload.read_all()) == (
        "m.png",
        "image/png",
        PNG,
    )


def test_detected_type_replaces_a_generic_one() -> None:
    payload = read_media(upload(WAV, "x.bin", "application/octet-stream"), AudioFile, "a", DEFAULT)
    assert payload.content_type == "audio/wave"


def test_audio_and_video_accept_each_others_containers() -> None:
    assert read_media(b64(MP4), AudioFile, "a", DEFAULT).read_all() == MP4
    assert read_media(b64(MP4), VideoFile, "v", DEFAULT).read_all() == MP4


def test_generic_media_accepts_any_bytes() -> None:
    assert read_media(b64(b"plain text"), MediaFile, "f", DEFAULT).read_all() == b"plain text"


def test_url_is_fetched_only_when_allowed() -> None:
    with media_server({"/a.wav": (WAV, "audio/wav")}) as server:
        with pytest.raises(MediaError) as refused:
            read_media(server.url("/a.wav"), AudioFile, "clip", DEFAULT)
        assert server.hits == []
        payload = read_media(server.url("/a.wav"), AudioFile, "clip", LOOPBACK)
    assert refused.value.field == "clip"
    assert "clip" in refused.value.message
    assert payload.read_all() == WAV
    assert payload.content_type == "audio/wav"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("/etc/passwd", "local file paths are not accepted"),
        ("~/.ssh/id_rsa", "local file paths are not accepted"),
        ("./x.png", "local file paths are not accepted"),
        ("file:///etc/passwd", "only http(s) URLs"),
        ("FILE:///etc/passwd", "only http(s) URLs"),
        ("ftp://example.com/a.png", "only http(s) URLs"),
        ("gopher://127.0.0.1:70/", "only http(s) URLs"),
        ("not*base64", "not valid base64"),
        ("data:image/png,rawtext", "malformed data: URL"),
        ("data:image/png;base64,", "empty media content"),
        ("", "empty media content"),
        ({"file_name": "a.png"}, "needs a 'content' string"),
        (12345, "expected a file upload"),
        (b64(b"hello, not an image"), "not a valid ImageFile"),
        (b64(WAV), "not a valid ImageFile"),
    ],
)
def test_refused_values_name_the_field(value: Any, words: str) -> None:
    with pytest.raises(MediaError) as info:
        read_media(value, ImageFile, "picture", DEFAULT)
    assert info.value.field == "picture"
    assert "picture" in info.value.message
    assert words in info.value.message


def test_kind_comes_from_the_bytes_not_the_client_file_name() -> None:
    # A text file called "a.png" is still text.
    with pytest.raises(MediaError, match="not a valid ImageFile"):
        read_media(
            upload(b"hello, not an image", "a.png", "image/png"), ImageFile, "image", DEFAULT
        )


def test_head_does_not_move_the_file_position() -> None:
    handle = io.BytesIO(PNG)
    handle.seek(3)
    payload = MediaPayload(handle)
    assert payload.head(8) == PNG[3:11]
    assert handle.tell() == 3
    assert payload.read_all() == PNG


# --- building media objects ----------------------------------------------------------------


@pytest.mark.parametrize("as_file", [False, True], ids=["bytes", "file"])
def test_build_media_holds_the_same_bytes(as_file: bool) -> None:
    data: Any = io.BytesIO(PNG) if as_file else PNG
    media = build_media(MediaPayload(data, "b.png", "image/png"), ImageFile)
    assert isinstance(media, ImageFile)
    assert (media.file_name, media.content_type) == ("b.png", "image/png")
    assert media.to_bytes() == PNG


def test_is_media_type() -> None:
    assert all(is_media_type(t) for t in (ImageFile, AudioFile, VideoFile, MediaFile))
    assert not any(is_media_type(t) for t in (str, bytes, BaseModel, list[ImageFile], None))
