"""Which GPUs the workers get: the ``gpus`` setting resolved to a list of device ids."""

from __future__ import annotations

import logging
import shutil
import subprocess

from apipod.errors import ConfigError, setting_hint
from apipod.gpu import gpu_indices

logger = logging.getLogger(__name__)

NO_GPUS = ""  # CUDA_VISIBLE_DEVICES="" hides every GPU from a worker


def resolve_gpus(setting: str) -> list[str]:
    """``"0,1"`` → ``["0", "1"]``; ``"none"`` → ``[]``; ``"auto"`` → what NVML (or
    ``nvidia-smi``) reports, or ``[]`` (CPU) when neither finds a GPU."""
    if setting == "none":
        return []
    if setting != "auto":
        return [part.strip() for part in setting.split(",") if part.strip()]
    found = gpu_indices()
    if found is None:
        found = _from_nvidia_smi()
    if not found:
        logger.info("no NVIDIA GPU found: workers run on the CPU")
        return []
    logger.info("found GPUs %s", ", ".join(found))
    return found


def check_gpus_exist(gpus: list[str]) -> None:
    """Raise :class:`ConfigError` when a GPU asked for by index is not on this box (NVML
    or ``nvidia-smi`` tell which exist; with neither, no GPU does)."""
    if not gpus:
        return
    found = gpu_indices()
    if found is None:
        found = _from_nvidia_smi()
    missing = [gpu for gpu in gpus if gpu not in (found or [])]
    if not missing:
        return
    have = f"this box has GPU(s) {', '.join(found)}" if found else "this box has no NVIDIA GPU"
    raise ConfigError(
        f"gpus {','.join(gpus)}: GPU {', '.join(missing)} does not exist ({have}); "
        f"use {setting_hint('gpus', 'auto')}, "
        f"{setting_hint('gpus', 'none')} (CPU) or existing indices"
    )


def gpu_for_worker(gpus: list[str], index: int) -> str | None:
    """Worker ``index`` gets ``gpus[index % len(gpus)]``; None means CPU only."""
    return gpus[index % len(gpus)] if gpus else None


def _from_nvidia_smi() -> list[str] | None:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        output = subprocess.run(
            [executable, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("nvidia-smi failed: %s", exc)
        return None
    return [line.strip() for line in output.splitlines() if line.strip().isdigit()]
