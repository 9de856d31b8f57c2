"""GPU check: the OCR example (examples/ocr) on onnxruntime-gpu, on a box with an NVIDIA GPU.

    pip install -r examples/ocr/requirements.txt
    pip uninstall -y onnxruntime && pip install onnxruntime-gpu   # the same wheel name space
    pip install -e ".[gpu]"                                       # nvidia-ml-py
    python scripts/gpu_check.py [--port 8790]

It starts ``apipod start`` on the OCR example (``OCR_USE_CUDA=1``, one worker, GPUs
``auto``, ``max_jobs_per_worker=2``) with one extra route, ``/providers``, that says
which execution providers the worker's three ONNX sessions run on, and checks:
  1. ``CUDAExecutionProvider`` is the first provider of every session in the worker, the
     worker is pinned (``CUDA_VISIBLE_DEVICES``), and ``/read`` reads a rendered line exactly;
  2. the API process holds no CUDA context (it is not among NVML's compute processes;
     ``nvidia-smi`` when nvidia-ml-py is missing) while the worker is;
  3. GPU memory is freed when the worker is recycled: after its 2 jobs the worker is
     replaced, its pid leaves the compute processes, and the GPU's used memory falls back.
NVML names processes by their pid in the host's pid namespace: run it on the host, or
in a container started with ``--pid=host`` (else check 2's worker row fails, never
passes silently). It prints one table and exits 0 when every check passes, 1 when one fails, and 2 at once,
with the reason, on a box without an NVIDIA GPU or without onnxruntime's CUDA provider:
it never passes where it could not check.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from apipod.gpu import query_nvml  # noqa: E402
from apipod.supervisor.gpus import resolve_gpus  # noqa: E402

logger = logging.getLogger("gpu_check")
OCR_FOLDER = Path(__file__).resolve().parent.parent / "examples" / "ocr"
TEXT = "queue mode works"

#: The OCR example plus a route that reports the worker's ONNX execution providers.
SERVICE = f"""
import os
import sys

sys.path.insert(0, {str(OCR_FOLDER)!r})
import service as ocr
from service import app

@app.endpoint("/providers")
def providers() -> dict:
    engine = ocr.engine
    sessions = {{"det": engine.text_det.infer, "cls": engine.text_cls.infer,
                "rec": engine.text_rec.session}}
    return {{"pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "providers": {{k: s.session.get_providers() for k, s in sessions.items()}}}}
"""


class NotCheckable(RuntimeError):
    """This box cannot run the check (no GPU, no CUDA provider): exit 2, never a pass."""


def preflight() -> list[str]:
    """The GPUs to use; :class:`NotCheckable` with the reason when there are none or
    onnxruntime has no CUDA provider."""
    gpus = resolve_gpus("auto")
    if not gpus:
        raise NotCheckable("no NVIDIA GPU on this box (neither NVML nor nvidia-smi finds one)")
    try:
        import onnxruntime  # noqa: PLC0415
    except ImportError as exc:
        raise NotCheckable("onnxruntime is not installed: pip install onnxruntime-gpu") from exc
    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise NotCheckable(
            f"onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider ({available}):"
            " pip uninstall -y onnxruntime && pip install onnxruntime-gpu"
        )
    return gpus


def gpu_processes() -> dict[int, int]:
    """pid → bytes of GPU memory of every process holding a CUDA context, all GPUs."""

    def read(nvml: object) -> dict[int, int]:
        found: dict[int, int] = {}
        for index in range(nvml.nvmlDeviceGetCount()):  # type: ignore[attr-defined]
            handle = nvml.nvmlDeviceGetHandleByIndex(index)  # type: ignore[attr-defined]
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):  # type: ignore[attr-defined]
                found[int(proc.pid)] = int(proc.usedGpuMemory or 0)
        return found

    from_nvml = query_nvml(read)
    return from_nvml if from_nvml is not None else _from_nvidia_smi()


def _from_nvidia_smi() -> dict[int, int]:
    query = ["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
    output = subprocess.run(
        [shutil.which("nvidia-smi") or "nvidia-smi", *query],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    found = {}
    for line in output.splitlines():
        pid, _, used = (part.strip() for part in line.partition(","))
        if pid.isdigit():
            found[int(pid)] = int(used) * 2**20 if used.isdigit() else 0
    return found


def gpu_memory_used() -> int:
    """Bytes in use on all GPUs together (NVML), or -1 when NVML does not answer."""
    used = query_nvml(
        lambda nvml: sum(
            int(nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(i)).used)
            for i in range(nvml.nvmlDeviceGetCount())
        )
    )
    return -1 if used is None else used


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def rendered_line() -> bytes:
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    pixels = np.full((120, 40 + 30 * len(TEXT), 3), 255, np.uint8)
    cv2.putText(pixels, TEXT, (20, 82), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (0, 0, 0), 3, cv2.LINE_AA)
    return cv2.imencode(".png", pixels)[1].tobytes()


def finished(client: httpx.Client, path: str, **kwargs: object) -> dict:
    body = client.post(path, params={"wait": 120}, **kwargs).json()  # type: ignore[arg-type]
    if body.get("status") != "finished":
        raise RuntimeError(f"{path}: the job did not finish: {body}")
    return body["result"]


Row = tuple[str, bool, str]


def check_providers(client: httpx.Client) -> tuple[list[Row], dict]:
    """Job 1 (of the first worker): its sessions' providers."""
    info = finished(client, "/providers", json={})
    on_cuda = all(p and p[0] == "CUDAExecutionProvider" for p in info["providers"].values())
    pinned = info["cuda_visible_devices"] not in (None, "")
    rows = [
        (
            "CUDAExecutionProvider first in the worker's det/cls/rec sessions",
            on_cuda,
            str(info["providers"]),
        ),
        (
            "worker pinned to its GPU",
            pinned,
            f"CUDA_VISIBLE_DEVICES={info['cuda_visible_devices']}",
        ),
    ]
    return rows, info


def check_read(client: httpx.Client, api_pid: int, worker_pid: int) -> list[Row]:
    """Job 2 (the worker's last before recycling): a real read, then who holds contexts."""
    files = {"image": ("line.png", rendered_line(), "image/png")}
    lines = finished(client, "/read", files=files)["lines"]
    texts = [line["text"] for line in lines]
    holders = gpu_processes()
    return [
        ("/read on CUDA reads the rendered line exactly", texts == [TEXT], str(texts)),
        (
            "API process holds no CUDA context",
            api_pid not in holders,
            f"api {api_pid}, holders {holders}",
        ),
        (
            "worker holds a CUDA context",
            worker_pid in holders,
            f"worker {worker_pid}, holders {holders}",
        ),
    ]


def check_recycling(client: httpx.Client, old_pid: int, base: int, held: int) -> list[Row]:
    """Job 3 runs in the replacement worker; the old one's memory must be gone: the GPU's
    use above ``base`` (before the service started) stays near one worker's (``held``),
    not two."""
    new_pid = finished(client, "/providers", json={})["pid"]
    gone = wait_until(lambda: old_pid not in gpu_processes(), timeout=30)
    used_after = gpu_memory_used()
    detail = f"old pid {old_pid}, new pid {new_pid}, holders {gpu_processes()}"
    mib = [round(v / 2**20) for v in (base, held, used_after)]
    memory = f"used MiB: {mib[0]} before the service, {mib[1]} with the old worker, {mib[2]} after"
    freed = -1 not in (base, held, used_after) and used_after - base < 1.5 * (held - base)
    return [
        ("worker replaced after max_jobs_per_worker=2", new_pid != old_pid, detail),
        ("the old worker's CUDA context is gone", gone, detail),
        ("GPU memory of the old worker freed", freed, memory),
    ]


def run_checks(url: str, base: int) -> list[Row]:
    with httpx.Client(base_url=url, timeout=180) as client:
        health = client.get("/health").json()
        rows, info = check_providers(client)
        rows += check_read(client, health["api"]["pid"], info["pid"])
        rows += check_recycling(client, info["pid"], base, gpu_memory_used())
    return rows


def print_table(rows: list[Row]) -> None:
    width = max(len(name) for name, _, _ in rows)
    logger.info("%-4s  %-*s  %s", "", width, "check", "detail")
    for name, ok, detail in rows:
        logger.info("%-4s  %-*s  %s", "PASS" if ok else "FAIL", width, name, detail)


def start_service(folder: Path, port: int) -> subprocess.Popen:
    (folder / "gpu_ocr_service.py").write_text(SERVICE)
    env = {
        **os.environ,
        "APIPOD_DATA_DIR": str(folder / "data"),
        "APIPOD_PORT": str(port),
        "APIPOD_MAX_JOBS_PER_WORKER": "2",
        "APIPOD_MAX_WORKERS": "1",
        "APIPOD_GPUS": "auto",
        "OCR_USE_CUDA": "1",
    }
    command = [sys.executable, "-m", "apipod", "start", str(folder / "gpu_ocr_service.py")]
    return subprocess.Popen(command, env=env, start_new_session=True)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8790)
    args = parser.parse_args()
    try:
        gpus = preflight()
    except NotCheckable as exc:
        logger.error("gpu_check cannot run here: %s", exc)
        return 2
    logger.info("GPUs: %s", ", ".join(gpus))
    base = gpu_memory_used()
    process = start_service(Path(tempfile.mkdtemp(prefix="apipod-gpu-")), args.port)
    url = f"http://127.0.0.1:{args.port}"
    try:
        if not wait_until(lambda: _healthy(url), timeout=180):
            logger.error("the OCR service did not become healthy within 180 s")
            return 1
        rows = run_checks(url, base)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    print_table(rows)
    return 0 if all(ok for _, ok, _ in rows) else 1


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
