"""Unit tests of GPU assignment and restart back-off (no service needed)."""

from __future__ import annotations

import multiprocessing
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

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


FAKE_SMI = """#!/bin/sh
# Answers like nvidia-smi on a box with two GPUs, and only to the query APIPod sends.
if [ "$1" = "--query-gpu=index" ] && [ "$2" = "--format=csv,noheader" ]; then
    printf '%s' "$ANSWER"
    exit "${EXIT_CODE:-0}"
fi
echo "unexpected arguments: $*" >&2
exit 9
"""


class FakeNvml(types.ModuleType):
    """A stand-in for ``pynvml`` that answers like a driver with ``count`` GPUs."""

    def __init__(self, count: int | None) -> None:
        super().__init__("pynvml")
        self.count = count
        self.calls: list[str] = []

    def nvmlInit(self) -> None:  # noqa: N802 - the pynvml names
        self.calls.append("init")
        if self.count is None:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self.calls.append("count")
        assert self.count is not None
        return self.count

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.calls.append("shutdown")


@pytest.fixture
def fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``fake_smi(answer, exit_code=0)`` puts a stand-in nvidia-smi alone on PATH;
    ``fake_smi(None)`` leaves PATH without any."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))

    def install(answer: str | None, exit_code: int = 0) -> None:
        if answer is None:
            return
        script = bin_dir / "nvidia-smi"
        script.write_text(FAKE_SMI)
        script.chmod(0o755)
        monkeypatch.setenv("ANSWER", answer)
        monkeypatch.setenv("EXIT_CODE", str(exit_code))

    return install


def use_nvml(monkeypatch: pytest.MonkeyPatch, count: int | None, absent: bool = False) -> FakeNvml:
    fake = FakeNvml(count)
    # None in sys.modules makes ``import pynvml`` raise ImportError, as when not installed
    monkeypatch.setitem(sys.modules, "pynvml", None if absent else fake)
    return fake


def test_auto_counts_the_gpus_nvml_reports(monkeypatch: pytest.MonkeyPatch, fake_smi) -> None:
    fake_smi("7\n")  # must not be asked: NVML answered
    nvml = use_nvml(monkeypatch, 2)
    assert resolve_gpus("auto") == ["0", "1"]
    assert nvml.calls == ["init", "count", "shutdown"]


def test_auto_with_nvml_and_no_gpu_is_cpu(monkeypatch: pytest.MonkeyPatch, fake_smi) -> None:
    fake_smi(None)
    use_nvml(monkeypatch, 0)
    assert resolve_gpus("auto") == []


@pytest.mark.parametrize("nvml", ["not installed", "no driver"])
def test_auto_falls_back_to_nvidia_smi(
    monkeypatch: pytest.MonkeyPatch, fake_smi, nvml: str
) -> None:
    use_nvml(monkeypatch, None, absent=nvml == "not installed")
    fake_smi("0\n1\n")
    assert resolve_gpus("auto") == ["0", "1"]


def test_nvidia_smi_output_is_parsed_line_by_line(
    monkeypatch: pytest.MonkeyPatch, fake_smi
) -> None:
    use_nvml(monkeypatch, None, absent=True)
    fake_smi(" 0 \r\n\nNo devices were found? no: 1\n1\n")
    assert resolve_gpus("auto") == ["0", "1"]


@pytest.mark.parametrize(
    ("answer", "exit_code"),
    [(None, 0), ("0\n1\n", 6), ("No devices were found\n", 0)],
    ids=["no nvidia-smi", "nvidia-smi fails", "no devices"],
)
def test_auto_without_any_gpu_is_cpu(
    monkeypatch: pytest.MonkeyPatch, fake_smi, answer: str | None, exit_code: int
) -> None:
    use_nvml(monkeypatch, None, absent=True)
    fake_smi(answer, exit_code)
    assert resolve_gpus("auto") == []


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
