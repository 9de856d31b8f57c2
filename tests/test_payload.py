"""The job payload: client data survives storing unchanged and can never become a
stored-file reference; envelopes are found and rendered; results are stored once."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from media_toolkit import ImageFile, MediaFile

from apipod.app.budget import InflightBudget
from apipod.payload import (
    FILE_KEY,
    INLINE_COPIES,
    FileRenderer,
    decode,
    escape,
    has_files,
    store_result,
    stored_files,
)
from apipod.store import open_store
from apipod.store.base import JobStore

KEYS = ["$file", "$$file", "$", "$$", "file_name", "a", "$ref", "x$", ""]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(6 if depth < 4 else 3)
    if choice == 0:
        return rng.choice([None, True, 1, 2.5, "s", "$file"])
    if choice in (1, 2):
        return rng.choice(KEYS)
    if choice == 3:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(KEYS): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def _never_a_file(media: Any) -> Any:
    pytest.fail(f"{media!r} read as a file")


def test_client_json_round_trips_and_never_holds_a_reference() -> None:
    rng = random.Random(11)
    for _ in range(2000):
        value = random_json(rng)
        stored = json.loads(json.dumps(escape(value)))
        assert not has_files(stored), value
        assert stored_files(stored) == []
        assert decode(stored, _never_a_file) == value


def test_forged_envelopes_are_data() -> None:
    forged = {FILE_KEY: "files/other-job/image.png", "file_name": "x", "content_type": "y"}
    stored = escape({"data": forged, "list": [forged]})
    assert not has_files(stored)
    assert decode(stored, lambda media: None) == {"data": forged, "list": [forged]}


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    opened = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "data")
    opened.migrate()
    yield opened
    opened.close()


def test_a_result_is_stored_once_and_described_by_an_envelope(store: JobStore) -> None:
    value = {"image": np.zeros((4, 4, 3), dtype=np.uint8), "$meta": {"$file": "no"}}
    stored = store_result(value, dict, store, "job-1")
    # Under a plain dict annotation an array stays an array (JSON), not an image.
    assert stored["image"] == np.zeros((4, 4, 3), dtype=np.uint8).tolist()
    assert not has_files(stored)
    assert decode(stored, lambda media: None)["$meta"] == {"$file": "no"}
    image = ImageFile().from_np_array(np.zeros((4, 4, 3), dtype=np.uint8))
    stored = store_result({"out": image, "$x": 1}, dict, store, "job-1")
    (media,) = stored_files(stored)
    assert media.file_name == "image.png" and media.name == "result.png"
    assert media.size == len(image.to_bytes())
    assert store.read_file(media.ref) == image.to_bytes()
    rendered = decode(stored, lambda found: {"ref": found.ref})
    assert rendered == {"out": {"ref": media.ref}, "$x": 1}
    assert [f.name for f in store.list_files("job-1")] == ["result.png"]


def test_a_path_result_is_copied_from_its_file(store: JobStore, tmp_path: Path) -> None:
    source = tmp_path / "made.bin"
    source.write_bytes(bytes(range(256)) * 9000)
    stored = store_result(source, MediaFile, store, "job-2")
    (media,) = stored_files(stored)
    assert media.file_name == "made.bin" and media.size == 256 * 9000
    assert store.read_file(media.ref) == source.read_bytes()


def test_a_broken_stored_envelope_renders_without_content(store: JobStore) -> None:
    renderer = FileRenderer(store, "auto", 8_000_000, lambda media: "http://h/x")
    for envelope in ({FILE_KEY: "nonsense"}, {FILE_KEY: "files/job-x/gone.png", "size": 3}):
        rendered = decode(envelope, renderer)
        assert rendered["content"] is None, envelope
    streamed = FileRenderer(store, "all", 0, lambda media: "http://h/x")
    assert decode({FILE_KEY: "files/job-x/gone.png"}, streamed)["content"] is None


def test_a_media_object_returned_twice_is_stored_once(store: JobStore, tmp_path: Path) -> None:
    source = tmp_path / "clip.bin"
    source.write_bytes(b"clip")
    with open(source, "rb") as handle:
        media = MediaFile(file_name="clip.bin").from_bytesio_or_handle(handle, copy=False)
        stored = store_result({"a": media, "b": [media, media]}, dict, store, "job-3")
        assert not handle.closed  # an input's file stays open for the caller to close
    refs = {media.ref for media in stored_files(stored)}
    assert len(refs) == 1 and [f.name for f in store.list_files("job-3")] == ["clip.bin"]


def test_inline_results_share_one_budget_per_answer_and_the_process_budget(
    store: JobStore,
) -> None:
    files = [MediaFile(file_name=f"f{i}.bin").from_bytes(bytes([i]) * 3000) for i in range(3)]
    stored = store_result(files, list[MediaFile], store, "job-inline")
    inline = [
        isinstance(m["content"], str) and not m["content"].startswith("http")
        for m in decode(stored, FileRenderer(store, "auto", 7000, lambda media: "http://h/x"))
    ]
    assert inline == [True, True, False]  # 6,000 of the answer's 7,000 bytes
    budget = InflightBudget(3000 * INLINE_COPIES * 4)  # room for four files at once
    first, second = budget.open(), budget.open()
    answers = [
        decode(stored, FileRenderer(store, "auto", 10**6, lambda media: "http://h/x", r.take))
        for r in (first, second)
    ]
    contents = [[m["content"] for m in answer] for answer in answers]
    assert [c == "http://h/x" for c in contents[0] + contents[1]] == [False] * 4 + [True] * 2
    first.close()
    assert budget.used == 3000 * INLINE_COPIES
