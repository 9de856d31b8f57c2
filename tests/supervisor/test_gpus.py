"""Unit tests of GPU assignment and restart back-off (no service needed)."""

from __future__ import annotations

import multiprocessing
import os
import shutil

import pytest

from apipod.config import Config
from apipod.supervisor.children import backoff_s, new_worker_id, spawn, worker_env
from apipod.supervisor.gpus import gpu_for_worker, resolve_gpus


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("0,1", ["0", "1"]),
        ("0", ["0"]),
        (" 2 , 5 ,", ["2", "5"]),
        ("3,1,2", ["3", "1", "2"]),
        ("none", []),
    ],
)
def test_resolve_explicit_settings(setting: str, expected: list[str]) -> None:
    assert resolve_gpus(setting) == expected


def test_resolve_auto_lists_device_ids_or_nothing() -> None:
    found = resolve_gpus("auto")
    assert isinstance(found, list)
    assert all(gpu.isdigit() for gpu in found), found
    assert found == [str(i) for i in range(len(found))]  # NVML/nvidia-smi count from 0
    has_probe = shutil.which("nvidia-smi") is not None
    try:
        import pynvml  # noqa: F401

        has_probe = True
    except ImportError:
        pass
    if not has_probe:
        assert found == [], "no NVML and no nvidia-smi: workers must run on the CPU"


def test_workers_round_robin_over_gpus() -> None:
    gpus = ["0", "1"]
    assert [gpu_for_worker(gpus, i) for i in range(5)] == ["0", "1", "0", "1", "0"]
    assert [gpu_for_worker(["3", "7", "9"], i) for i in range(4)] == ["3", "7", "9", "3"]
    assert gpu_for_worker(["4"], 6) == "4"


def test_no_gpus_means_cpu_only() -> None:
    assert gpu_for_worker([], 0) is None
    assert gpu_for_worker([], 3) is None
    assert gpu_for_worker(resolve_gpus("none"), 0) is None


def test_worker_env_pins_cuda_visible_devices() -> None:
    config = Config(compute="serverless", max_workers=2, gpus="0,1")
    assert worker_env("1", config)["CUDA_VISIBLE_DEVICES"] == "1"
    assert worker_env(None, config)["CUDA_VISIBLE_DEVICES"] == ""  # hides every GPU
    env = worker_env("0", config)
    assert env["APIPOD_MAX_WORKERS"] == "2"
    assert env["APIPOD_GPUS"] == "0,1"


def test_backoff_doubles_from_zero_and_is_capped() -> None:
    assert backoff_s(0) == 0.0
    assert backoff_s(-1) == 0.0
    assert [backoff_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert backoff_s(7) == 30.0
    assert backoff_s(100) == 30.0  # no overflow, still the cap


def test_backoff_with_custom_base_and_cap() -> None:
    assert [backoff_s(n, base=1.0, cap=60.0) for n in range(1, 9)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        32.0,
        60.0,
        60.0,
    ]


def test_worker_ids_are_unique_per_start_and_name_their_slot() -> None:
    ids = {new_worker_id("host-abc123", 1) for _ in range(50)}
    assert len(ids) == 50
    assert all(worker_id.startswith("host-abc123/w1.") for worker_id in ids)


def _report_env(conn) -> None:  # runs in the spawned child
    conn.send(
        (
            os.environ.get("CUDA_VISIBLE_DEVICES"),
            os.environ.get("APIPOD_TEST_MARK"),
            multiprocessing.get_start_method(allow_none=True),
        )
    )
    conn.close()


def test_spawn_sets_env_in_child_only() -> None:
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    parent_end, child_end = multiprocessing.Pipe(duplex=False)
    env = {"CUDA_VISIBLE_DEVICES": "1", "APIPOD_TEST_MARK": "child"}
    process = spawn(_report_env, (child_end,), env, "env-probe")
    try:
        child_end.close()
        assert parent_end.poll(30), "the spawned child did not report"
        cuda, mark, method = parent_end.recv()
    finally:
        process.join(timeout=10)
    assert process.exitcode == 0
    assert (cuda, mark) == ("1", "child")
    assert method == "spawn"
    # the parent's environment is as it was
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == before
    assert "APIPOD_TEST_MARK" not in os.environ
