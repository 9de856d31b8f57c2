"""The supervisor tests run as on a box with four GPUs (a stand-in ``nvidia-smi``), so
that pinning workers to GPU indices passes the start-up check that they exist."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

FAKE_GPUS = Path(__file__).parent / "fake_gpus"


@pytest.fixture(scope="package", autouse=True)
def four_fake_gpus() -> Iterator[None]:
    before = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{FAKE_GPUS}{os.pathsep}{before}"
    try:
        yield
    finally:
        os.environ["PATH"] = before
