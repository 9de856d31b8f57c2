"""Workers are spawned, pinned to their GPU, load once, and claim jobs at once."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.helpers import ServiceProcess, running_service
from tests.supervisor.support import (
    client_for,
    full_log,
    health,
    median,
    ready_workers,
    run_job,
    seconds_between,
    status,
    submit,
    wait_terminal,
)

# Starts whole queue-mode services (supervisor, API, workers) per test: the full tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_gpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("two-gpus")
    with running_service(tmp, "queue_ok.py", max_workers=2, gpus="0,1", lease_s=2) as service:
        with client_for(service) as client:
            ready_workers(client, 2)
        yield service


@pytest.fixture(scope="module")
def no_gpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("no-gpus")
    with running_service(tmp, "queue_ok.py", max_workers=1, gpus="none") as service:
        yield service


@pytest.fixture
def client(two_gpus: ServiceProcess) -> Iterator[httpx.Client]:
    with client_for(two_gpus) as client:
        ready_workers(client, 2)
        yield client


def test_each_worker_sees_only_its_gpu(client: httpx.Client) -> None:
    # two jobs at once, each long enough that both workers must take one
    ids = [submit(client, "/pin", {"delay": 1.0}) for _ in range(2)]
    results = [wait_terminal(client, job_id) for job_id in ids]
    assert [r["status"] for r in results] == ["finished", "finished"], results
    seen = {r["result"]["pid"]: r["result"]["cuda_visible_devices"] for r in results}
    assert sorted(seen.values()) == ["0", "1"], seen
    assert len(seen) == 2, "the two GPUs must be seen by two different processes"

    _, body = health(client)
    by_pid = {w["pid"]: w["gpu"] for w in body["workers"]}
    assert by_pid == seen, f"/health {by_pid} disagrees with what the jobs saw {seen}"


def test_log_says_which_worker_has_which_gpu(
    two_gpus: ServiceProcess, client: httpx.Client
) -> None:
    _, body = health(client)
    log = full_log(two_gpus)
    for worker in body["workers"]:
        pid, gpu = worker["pid"], worker["gpu"]
        assert f"worker {worker['id']}: pid {pid} on GPU {gpu}" in log, log
        assert f"pid {pid}, GPU {gpu} (CUDA_VISIBLE_DEVICES='{gpu}')" in log, log


def test_workers_are_spawned_not_forked(two_gpus: ServiceProcess, client: httpx.Client) -> None:
    _, body = health(client)
    supervisor = psutil.Process(two_gpus.process.pid)
    children = {child.pid for child in supervisor.children()}
    for worker in body["workers"]:
        assert worker["pid"] in children, "workers are children of the supervisor"
        # A spawned child is a fresh exec whose environment had its GPU pinned from the
        # start; a forked one would show the supervisor's exec-time environment.
        exec_env = psutil.Process(worker["pid"]).environ()
        assert exec_env.get("CUDA_VISIBLE_DEVICES") == worker["gpu"], exec_env
        assert "CUDA_VISIBLE_DEVICES" not in supervisor.environ()


def test_on_worker_start_ran_once_per_worker_before_its_jobs(
    two_gpus: ServiceProcess, client: httpx.Client
) -> None:
    done = run_job(client, "/echo", {"text": "ab", "times": 2})
    assert done["status"] == "finished", done
    assert done["result"]["text"] == "abab"
    assert done["result"]["loaded_in_pid"] == done["result"]["pid"]

    log = full_log(two_gpus).splitlines()
    _, body = health(client)
    for worker in body["workers"]:
        mine = [line for line in log if f"[{worker['pid']}]" in line]
        hooks = [i for i, line in enumerate(mine) if "running on_worker_start hook load" in line]
        jobs = [i for i, line in enumerate(mine) if " runs job " in line]
        assert len(hooks) == 1, f"pid {worker['pid']} ran on_worker_start {len(hooks)} times"
        assert all(hooks[0] < i for i in jobs), "a job ran before on_worker_start finished"


def test_a_queued_job_starts_within_milliseconds_when_a_worker_is_idle(
    client: httpx.Client,
) -> None:
    delays = []
    for _ in range(20):
        response = client.post("/noop", params={"wait": 5}, json={})
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] != "finished":
            body = wait_terminal(client, body["job_id"])
        assert body["status"] == "finished", body
        assert body["result"] == {"ok": True}
        delays.append(seconds_between(body, "queued_at", "started_at"))
    assert median(delays) < 0.05, f"queued → started delays (s): {sorted(delays)}"


def test_progress_is_visible_while_running_and_the_last_value_is_kept(
    client: httpx.Client,
) -> None:
    job_id = submit(client, "/steps", {"count": 20, "delay": 0.1})
    seen: list[tuple[float, str]] = []
    body = status(client, job_id)
    while body["status"] in ("queued", "processing"):
        if body["status"] == "processing" and "progress" in body:
            seen.append((body["progress"], body["message"]))
        body = status(client, job_id)
    assert body["status"] == "finished", body
    assert body["result"] == {"steps": 20}
    assert body["progress"] == 1.0
    assert body["message"] == "step 20/20"

    progresses = [p for p, _ in seen]
    assert len(set(progresses)) >= 3, f"progress not visible while running: {seen}"
    assert progresses == sorted(progresses), f"progress went backwards: {progresses}"
    for progress, message in seen:
        match = re.fullmatch(r"step (\d+)/20", message)
        assert match, message
        assert int(match.group(1)) / 20 == pytest.approx(progress), (progress, message)


def test_gpus_none_hides_every_gpu(no_gpus: ServiceProcess) -> None:
    with client_for(no_gpus) as client:
        done = run_job(client, "/pin")
        assert done["status"] == "finished", done
        assert done["result"]["cuda_visible_devices"] == ""
        _, body = health(client)
    [worker] = body["workers"]
    assert worker["gpu"] is None
    assert worker["pid"] == done["result"]["pid"]
    assert f"pid {worker['pid']} on GPU none (CPU)" in full_log(no_gpus)
