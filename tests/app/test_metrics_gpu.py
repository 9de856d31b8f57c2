"""``apipod_gpu_memory_used_bytes`` where NVML answers, and nothing where it does not.

NVML cannot run on this machine (no GPU), so a stand-in ``pynvml`` module answers with
the shapes the real nvidia-ml-py returns; the device check of the GPU box covers the
real library."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apipod.app.metrics import render_metrics
from apipod.store import open_store


class NVMLError(Exception):
    pass


def fake_nvml(used: list[int] | None) -> types.ModuleType:
    module = types.ModuleType("pynvml")
    module.NVMLError = NVMLError

    def init() -> None:
        if used is None:
            raise NVMLError("Driver Not Loaded")

    module.nvmlInit = init
    module.nvmlShutdown = lambda: None
    module.nvmlDeviceGetCount = lambda: len(used or [])
    module.nvmlDeviceGetHandleByIndex = lambda index: index
    module.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(used=used[handle])
    return module


def gpu_samples(tmp_path: Path) -> dict[str, float]:
    store = open_store(f"sqlite:///{tmp_path / 'apipod.db'}", tmp_path)
    try:
        store.migrate()
        text = render_metrics(store).decode()
    finally:
        store.close()
    return {
        s.labels["gpu"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "apipod_gpu_memory_used_bytes"
        for s in family.samples
    }


def test_gpu_memory_per_gpu_where_nvml_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([2_000_000_000, 5]))
    assert gpu_samples(tmp_path) == {"0": 2e9, "1": 5.0}


def test_no_gpu_metric_where_nvml_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(None))
    assert gpu_samples(tmp_path) == {}
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: import fails
    assert gpu_samples(tmp_path) == {}
