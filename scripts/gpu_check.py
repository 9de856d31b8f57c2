"""GPU check for a machine with an NVIDIA GPU and torch installed (not part of CI).

    python scripts/gpu_check.py [--port 8790]

It starts `apipod start` on a throw-away service whose worker holds a torch model on
CUDA, and checks, in well under 3 minutes:
  1. jobs run on the GPU in the worker (device cuda:0, CUDA_VISIBLE_DEVICES pinned);
  2. the API process holds no CUDA context (nvidia-smi lists only worker pids);
  3. GPU memory is freed when the worker is recycled (max_jobs_per_worker=2): the old
     worker's pid leaves nvidia-smi's list and a new worker takes over.
Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

logger = logging.getLogger("gpu_check")

SERVICE = """
import os
import torch
from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost")
model = None

@app.on_worker_start
def load():
    global model
    model = torch.nn.Sequential(*[torch.nn.Linear(4096, 4096) for _ in range(8)]).cuda()

@app.endpoint("/infer")
def infer(n: int = 64) -> dict:
    with torch.no_grad():
        out = model(torch.randn(n, 4096, device="cuda"))
    torch.cuda.synchronize()
    return {"pid": os.getpid(), "device": str(out.device),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "allocated_mb": torch.cuda.memory_allocated() / 1e6}
"""


def gpu_pids() -> dict[int, int]:
    """pid → used MiB of every process holding a CUDA context."""
    output = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    pids = {}
    for line in output.splitlines():
        if "," in line:
            pid, used = (part.strip() for part in line.split(",", 1))
            pids[int(pid)] = int(used) if used.isdigit() else 0
    return pids


def wait_healthy(url: str, deadline: float) -> dict:
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url + "/health", timeout=5)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError("service did not become healthy")


def infer(client: httpx.Client) -> dict:
    body = client.post("/infer", params={"wait": 60}, json={"n": 64}).json()
    if body.get("status") != "finished":
        raise RuntimeError(f"job did not finish: {body}")
    return body["result"]


def run_checks(url: str, api_pid: int) -> list[tuple[str, bool, str]]:
    results = []
    with httpx.Client(base_url=url, timeout=90) as client:
        first, second = infer(client), infer(client)
        on_gpu = first["device"].startswith("cuda") and first["cuda_visible_devices"] not in (
            "",
            None,
        )
        results.append(("jobs run on CUDA in the worker", on_gpu, str(first)))
        holders = gpu_pids()
        results.append(("API process holds no CUDA context", api_pid not in holders, str(holders)))
        old_pid = second["pid"]
        results.append(("worker holds the model on the GPU", old_pid in holders, str(holders)))
        third = infer(client)  # served by the recycled (new) worker
        time.sleep(2)
        holders = gpu_pids()
        freed = third["pid"] != old_pid and old_pid not in holders
        results.append(
            (
                "GPU memory freed when the worker is recycled",
                freed,
                f"old pid {old_pid}, new pid {third['pid']}, holders {holders}",
            )
        )
    return results


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8790)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="apipod-gpu-"))
    (folder / "gpu_service.py").write_text(SERVICE)
    env = {
        **os.environ,
        "APIPOD_DATA_DIR": str(folder / "data"),
        "APIPOD_PORT": str(args.port),
        "APIPOD_MAX_JOBS_PER_WORKER": "2",
        "APIPOD_GPUS": "auto",
    }
    command = [sys.executable, "-m", "apipod", "start", str(folder / "gpu_service.py")]
    process = subprocess.Popen(command, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{args.port}"
    try:
        health = wait_healthy(url, time.monotonic() + 120)
        results = run_checks(url, health["api"]["pid"])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    for name, ok, detail in results:
        logger.info("%s  %s  (%s)", "PASS" if ok else "FAIL", name, detail)
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
