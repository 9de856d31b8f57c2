"""Media adapters on real bytes: client values -> MediaPayload -> media-toolkit objects,
and return values -> JSON (FileModel dicts for media)."""

from __future__ import annotations

import base64
import datetime
import enum
import io
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from media_toolkit import AudioFile, ImageFile, MediaFile, VideoFile
from PIL import Image
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import Headers, UploadFile

from apipod.errors import MediaError
from apipod.media.convert import (
    MediaPayload,
    apply_annotation,
    build_media,
    encode_result,
    file_model,
    is_media_type,
    read_media,
)
from apipod.media.fetch import UrlPolicy
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


# --- encoding results ----------------------------------------------------------------------


def test_file_model_shape() -> None:
    media = ImageFile(file_name="o.png", content_type="image/png").from_bytes(PNG)
    assert file_model(media) == {
        "file_name": "o.png",
        "content_type": "image/png",
        "content": b64(PNG),
    }
    generic = file_model(MediaFile().from_bytes(b"abc"))
    assert sorted(generic) == ["content", "content_type", "file_name"]
    assert generic["file_name"] and generic["content_type"]
    assert base64.b64decode(generic["content"]) == b"abc"


class Inner(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    clip: AudioFile
    tags: tuple[str, ...]


class Outer(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: Inner
    images: list[ImageFile]
    when: datetime.date


def test_encode_nested_media_and_models() -> None:
    image = ImageFile(file_name="i.png", content_type="image/png").from_bytes(PNG)
    clip = AudioFile(file_name="c.wav", content_type="audio/wav").from_bytes(WAV)
    value = Outer(
        inner=Inner(clip=clip, tags=("a", "b")), images=[image], when=datetime.date(2024, 1, 2)
    )
    encoded = encode_result({"result": value, "extra": (image, None)})
    image_json = {"file_name": "i.png", "content_type": "image/png", "content": b64(PNG)}
    clip_json = {"file_name": "c.wav", "content_type": "audio/wav", "content": b64(WAV)}
    assert encoded == {
        "result": {
            "inner": {"clip": clip_json, "tags": ["a", "b"]},
            "images": [image_json],
            "when": "2024-01-02",
        },
        "extra": [image_json, None],
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (3, 3),
        (2.5, 2.5),
        ("s", "s"),
        (False, False),
        ((1, [2, (3,)]), [1, [2, [3]]]),
        ({1: "a", "b": {2: None}}, {"1": "a", "b": {"2": None}}),
        (frozenset({7}), [7]),
        (b"\x00\x01", "AAE="),
        (np.float32(1.5), 1.5),
        (np.int64(4), 4),
        (np.bool_(True), True),
        (np.arange(4).reshape(2, 2), [[0, 1], [2, 3]]),
        (datetime.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (Path("/tmp/x"), "/tmp/x"),
    ],
)
def test_encode_plain_values(value: Any, expected: Any) -> None:
    result = encode_result(value)
    assert result == expected
    assert type(result) is type(expected)


def test_custom_media_encoder() -> None:
    image = ImageFile(file_name="i.png").from_bytes(PNG)
    assert encode_result([image, {"k": image}], encode_media=lambda m: m.file_name) == [
        "i.png",
        {"k": "i.png"},
    ]


def test_values_that_cannot_be_encoded() -> None:
    with pytest.raises(TypeError, match="file handles cannot be returned"):
        encode_result(io.BytesIO(b"x"))
    with pytest.raises(TypeError, match="cannot serialise a result of type object"):
        encode_result({"x": object()})


class Shade(enum.Enum):
    DARK = "dark"
    LIGHT = 2


class Swatch(BaseModel):
    shade: Shade


def test_encode_enums_by_value() -> None:
    # pydantic's own JSON for the model: {"shade": "dark"}
    assert encode_result(Swatch(shade=Shade.DARK)) == Swatch(shade=Shade.DARK).model_dump(
        mode="json"
    )
    assert encode_result([Shade.LIGHT]) == [2]


# --- results: the return annotation decides the encoding ----------------------------------------
def test_annotation_turns_arrays_into_png_or_jpeg() -> None:
    pixels = np.full((3, 5, 3), 40, dtype=np.uint8)
    png = apply_annotation(pixels, ImageFile)
    assert (png.file_name, png.content_type) == ("image.png", "image/png")
    assert png.to_np_array().shape == (3, 5, 3)
    jpeg = apply_annotation(pixels, ImageFile | None, image_format="jpeg")
    assert (jpeg.file_name, jpeg.content_type) == ("image.jpg", "image/jpeg")
    listed = apply_annotation([pixels, pixels], list[ImageFile])
    assert [m.file_name for m in listed] == ["image.png", "image.png"]
    # Not an image annotation: an array stays an array.
    assert apply_annotation(pixels, dict) is pixels
    assert apply_annotation(pixels, MediaFile) is pixels


def test_annotation_turns_pil_images_bytes_and_paths_into_files(tmp_path) -> None:
    rgba = Image.new("RGBA", (4, 4), (1, 2, 3, 4))
    assert apply_annotation(rgba, ImageFile).to_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    as_jpeg = apply_annotation(rgba, ImageFile, image_format="jpeg")
    assert as_jpeg.to_bytes()[:3] == b"\xff\xd8\xff" and as_jpeg.file_name == "image.jpg"
    wav = apply_annotation(b"RIFF" + bytes(4) + b"WAVEfmt " + bytes(40), AudioFile)
    assert wav.file_name == "audio.wav"
    unknown = apply_annotation(b"\x01\x02\x03", MediaFile)
    assert unknown.file_name == "file.bin"
    written = tmp_path / "render"
    written.write_bytes(b"data")
    from_path = apply_annotation(written, MediaFile)
    assert from_path.file_name == "render.bin" and from_path.to_bytes() == b"data"
    from_string = apply_annotation(str(written), VideoFile)
    assert from_string.to_bytes() == b"data"
    with pytest.raises(TypeError, match="no such file exists"):
        apply_annotation(str(tmp_path / "missing.mp4"), VideoFile)


def test_media_objects_keep_their_names_or_get_a_real_extension() -> None:
    named = ImageFile(file_name="cat.png").from_bytes(PNG)
    assert apply_annotation(named, ImageFile).file_name == "cat.png"
    default = ImageFile().from_bytes(PNG)
    assert default.file_name == "imagefile"
    assert apply_annotation(default, ImageFile).file_name == "image.png"
