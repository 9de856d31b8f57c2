"""Results on real bytes: return values -> media objects (as the annotation asks) -> JSON
(FileModel dicts for media)."""

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

from apipod.media.results import apply_annotation, encode_result, file_model
from tests.app.support import b64, mp4_bytes, png_bytes, wav_bytes

PNG = png_bytes(12, seed=5)
WAV = wav_bytes()
MP4 = mp4_bytes()


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
