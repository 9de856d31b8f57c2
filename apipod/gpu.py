"""NVML, the one way APIPod asks the NVIDIA driver about GPUs (the ``gpu`` extra,
nvidia-ml-py). The supervisor counts GPUs with it, ``/metrics`` reads their memory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


def query_nvml(read: Callable[[Any], T]) -> T | None:
    """``read(pynvml)`` between ``nvmlInit`` and ``nvmlShutdown``; ``None`` where
    nvidia-ml-py is not installed or NVML does not answer (no driver, no device)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            return read(pynvml)
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # NVML raises its own error types, one per driver fault
        logger.debug("NVML does not answer: %s", exc)
        return None


def gpu_indices() -> list[str] | None:
    """The GPUs of this box by index, as ``CUDA_VISIBLE_DEVICES`` names them."""
    return query_nvml(lambda nvml: [str(i) for i in range(nvml.nvmlDeviceGetCount())])


def gpu_memory_used() -> dict[int, int] | None:
    """Bytes of memory in use on each GPU, by index."""
    return query_nvml(
        lambda nvml: {
            index: int(nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(index)).used)
            for index in range(nvml.nvmlDeviceGetCount())
        }
    )
