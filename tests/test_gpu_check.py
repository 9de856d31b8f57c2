"""scripts/gpu_check.py never passes where it cannot check: on a box without an NVIDIA
GPU it exits 2 with the reason, before starting anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from apipod.supervisor.gpus import resolve_gpus

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


@pytest.mark.skipif(bool(resolve_gpus("auto")), reason="this box has a GPU: run the script itself")
def test_without_a_gpu_the_check_fails_with_the_reason() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--port", "1"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "gpu_check cannot run here: no NVIDIA GPU on this box" in done.stderr
    assert "PASS" not in done.stdout + done.stderr
