"""Queue mode, attacked through a real ``apipod start`` on 127.0.0.1: errors for their
audience, a corrupt row, the disk budget, orphaned media, file modes, a full disk,
status reads beside a huge job, and slow downloads beside ``/health``."""

from __future__ import annotations

import os
import sqlite3
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil
import pytest

from tests.app.support import b64, png_bytes
from tests.helpers import ServiceProcess, http_client, running_service, wait_for_status

pytestmark = pytest.mark.slow
PNG = png_bytes(side=300, seed=5)


@pytest.fixture(scope="module")
def errors_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("client-errors")
    with running_service(tmp, "queue_client_errors.py", max_workers=1, gpus="none") as service:
        yield service


def db_of(service: ServiceProcess) -> Path:
    return Path(service.env["APIPOD_DATA_DIR"]) / "apipod.db"


# --- errors for their audience -------------------------------------------------------------------
def test_http_error_fails_the_job_with_its_code_and_message(errors_service: ServiceProcess) -> None:
    with http_client(errors_service.url, timeout=30) as client:
        job_id = client.post("/refuse", json={"voice": "tenor"}).json()["job_id"]
        done = wait_for_status(client, job_id, {"failed"})
        assert done["error"] == "HTTPError 404: no such voice: tenor"
        now = client.post("/refuse-now", json={"voice": "bass"})
        assert now.status_code == 409 and now.json() == {"detail": "voice bass is busy"}
        crash = client.post("/crash-now")
        assert crash.status_code == 500
        assert crash.json() == {"detail": "RuntimeError: disk /srv/models/secret.bin unreadable"}


def test_a_corrupt_row_shows_as_failed_and_spoils_nothing_else(
    errors_service: ServiceProcess,
) -> None:
    with http_client(errors_service.url, timeout=30) as client:
        good = client.post("/refuse").json()["job_id"]
        bad = client.post("/refuse").json()["job_id"]
        wait_for_status(client, bad, {"failed"})
        with sqlite3.connect(db_of(errors_service), timeout=10) as conn:
            conn.execute("UPDATE jobs SET created_at = 'garbage' WHERE id = ?", (bad,))
        jobs = client.get("/jobs")
        assert jobs.status_code == 200
        listed = {job["job_id"]: job for job in jobs.json()["jobs"]}
        assert good in listed and listed[bad]["status"] == "failed"
        assert "cannot be read" in listed[bad]["error"]
        status = client.get(f"/status/{bad}")
        assert status.status_code == 200 and status.json()["status"] == "failed"


def test_503_names_no_path_or_credentials(errors_service: ServiceProcess) -> None:
    """A writer holding the database lock makes submits fail with 503."""
    conn = sqlite3.connect(db_of(errors_service), timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        response = httpx.post(f"{errors_service.url}/refuse", timeout=30)
    finally:
        conn.close()
    assert response.status_code == 503 and response.headers["retry-after"]
    text = response.text
    assert "apipod.db" not in text and "/" not in response.json()["detail"], text


def test_health_with_a_key_shows_details_to_key_holders_only(tmp_path: Path) -> None:
    settings = {"api_key": "k3y", "max_workers": 1, "gpus": "none"}
    with running_service(tmp_path, "queue_front.py", **settings) as service:
        anonymous = httpx.get(f"{service.url}/health", timeout=10)
        assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
        holder = httpx.get(
            f"{service.url}/health", headers={"Authorization": "bearer k3y"}, timeout=10
        ).json()
        assert holder["status"] == "ok" and holder["workers"] and holder["api"]["pid"]


# --- disk ------------------------------------------------------------------------------------------
def test_stored_bytes_budget_answers_507(tmp_path: Path) -> None:
    settings = {"max_stored_mb": 1, "max_workers": 1, "gpus": "none"}
    with running_service(tmp_path, "queue_front.py", **settings) as service:
        text = "x" * 400_000
        answers = [
            httpx.post(f"{service.url}/echo", json={"text": text}, timeout=30) for _ in range(4)
        ]
        codes = [a.status_code for a in answers]
        assert codes == [200, 200, 200, 507], codes
        assert "max_stored_mb" in answers[-1].json()["detail"]


def test_media_without_a_row_are_swept_at_start_and_modes_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    orphan = data / "files" / "f00dcafe"
    orphan.mkdir(parents=True)
    (orphan / "image.png").write_bytes(b"left by a killed API")
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    data.chmod(0o755)
    with running_service(tmp_path, "queue_front.py", max_workers=1, gpus="none") as service:
        deadline = time.monotonic() + 60
        while orphan.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not orphan.exists()
        submitted = httpx.post(
            f"{service.url}/image", json={"picture": b64(PNG)}, timeout=30
        ).json()
        assert data.stat().st_mode & 0o777 == 0o700
        assert (data / "apipod.db").stat().st_mode & 0o777 == 0o600
        [stored] = (data / "files" / submitted["job_id"]).iterdir()
        assert stored.stat().st_mode & 0o777 == 0o600
        # a cancelled job keeps its inputs until its TTL, so that it can be retried
        hold = httpx.post(f"{service.url}/hold", json={"seconds": 30}, timeout=30).json()
        queued = httpx.post(f"{service.url}/image", json={"picture": b64(PNG)}, timeout=30)
        queued_id = queued.json()["job_id"]
        assert (data / "files" / queued_id).exists()
        httpx.post(f"{service.url}/cancel/{queued_id}", timeout=30)
        assert (data / "files" / queued_id).exists()
        httpx.post(f"{service.url}/cancel/{hold['job_id']}", timeout=30)


def test_a_full_disk_while_storing_media_is_a_507(tmp_path: Path) -> None:
    """RLIMIT_FSIZE on the API process: writing a large file fails as on a full disk."""
    with running_service(tmp_path, "queue_front.py", max_workers=1, gpus="none") as service:
        api = psutil.Process(httpx.get(f"{service.url}/health", timeout=10).json()["api"]["pid"])
        big = png_bytes(side=400, seed=9)  # about 480 KB: spooled in memory, then stored
        soft, hard = api.rlimit(psutil.RLIMIT_FSIZE)
        api.rlimit(psutil.RLIMIT_FSIZE, (300_000, hard))
        try:
            response = httpx.post(f"{service.url}/image", json={"picture": b64(big)}, timeout=30)
        finally:
            api.rlimit(psutil.RLIMIT_FSIZE, (soft, hard))
        assert response.status_code == 507, response.text
        assert response.json()["detail"]
        files = Path(service.env["APIPOD_DATA_DIR"]) / "files"
        assert not files.exists() or not any(files.iterdir()), "half-stored media left behind"
        ok = httpx.post(f"{service.url}/echo", json={"text": "fine"}, timeout=30)
        assert ok.status_code == 200


# --- status reads beside a huge job ----------------------------------------------------------------
def test_status_stays_fast_beside_a_16_mb_job_and_long_polls(tmp_path: Path) -> None:
    with running_service(tmp_path, "queue_front.py", max_workers=1, gpus="none") as service:
        with http_client(service.url, timeout=60) as client:
            huge = client.post("/hold", json={"seconds": 30, "pad": "p" * 15_000_000})
            huge_id = huge.json()["job_id"]
            small = client.post("/echo", json={"text": "x"}).json()["job_id"]
            stop = threading.Event()

            def long_poll() -> None:
                with http_client(service.url, timeout=60) as poller:
                    while not stop.is_set():
                        poller.get(f"/status/{huge_id}", params={"wait": 1})

            pollers = [threading.Thread(target=long_poll) for _ in range(10)]
            for thread in pollers:
                thread.start()
            try:
                timings = []
                for _ in range(100):
                    start = time.monotonic()
                    assert client.get(f"/status/{small}").status_code == 200
                    timings.append(time.monotonic() - start)
            finally:
                stop.set()
                for thread in pollers:
                    thread.join(timeout=10)
            client.post(f"/cancel/{huge_id}")
        p99 = statistics.quantiles(timings, n=100)[-1]
        print(
            f"unrelated /status p50 {statistics.median(timings) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms",
            sorted(round(t * 1000) for t in timings)[-5:],
        )
        # Before: 657 ms median. The 20 ms p99 target is measured by
        # benchmarks/abuse_bench.py; a shared, loaded test box gets a looser bound.
        assert statistics.median(timings) < 0.01 and p99 < 0.25, f"p99 {p99 * 1000:.0f} ms"


# --- slow downloads beside /health ------------------------------------------------------------------
class _Stalling(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        time.sleep(4)
        self.send_error(404)


def test_slow_downloads_never_hold_the_threads_of_health(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stalling)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/slow.png"
    settings = {"media_url_allowlist": "127.0.0.1", "max_workers": 1, "gpus": "none"}
    try:
        with running_service(tmp_path, "queue_front.py", **settings) as service:
            submits = [
                threading.Thread(
                    target=httpx.post,
                    args=(f"{service.url}/image",),
                    kwargs={"json": {"picture": url}, "timeout": 60},
                )
                for _ in range(45)
            ]
            for thread in submits:
                thread.start()
            time.sleep(1.0)
            start = time.monotonic()
            assert httpx.get(f"{service.url}/health", timeout=30).status_code == 200
            took = time.monotonic() - start
            for thread in submits:
                thread.join(timeout=60)
            # Held threads would make /health wait for a download (4 s, 1 s of it gone); a
            # free one answers in milliseconds, under 1 s even on a loaded 2-core CI box.
            assert took < 2.0, f"/health took {took:.2f} s beside 45 slow downloads"
    finally:
        server.shutdown()
        server.server_close()


def test_job_history_reads_no_inputs(tmp_path: Path) -> None:
    settings = {"role": "api", "gpus": "none"}
    with running_service(tmp_path, "queue_front.py", wait_healthy=False, **settings) as service:
        service.wait_until("/openapi.json", status=200)
        with http_client(service.url, timeout=60) as client:
            for i in range(60):
                assert client.post("/echo", json={"text": f"{i}" + "t" * 1_000_000}).is_success
            api = psutil.Process(client.get("/health").json()["api"]["pid"])
            before = api.memory_info().rss
            start = time.monotonic()
            listed = client.get("/jobs", params={"limit": 1000})
            took = time.monotonic() - start
        assert listed.status_code == 200 and len(listed.json()["jobs"]) == 60
        assert len(listed.content) < 100_000
        print(f"/jobs over 60 jobs of 1 MB inputs: {took * 1000:.1f} ms")
        # the bytes and RSS above are the point; the time only catches a gross regression
        assert took < 1.0, f"/jobs took {took:.2f} s"
        assert api.memory_info().rss - before < 20_000_000
