"""Numbers in query parameters, path parts and headers: junk ('²', 5,000 digits, NaN, -1,
past 64 bits) is a 4xx with a JSON body on every route, never a 500 (issue 22, 4); and
schemathesis fuzzes every route of a real queue-mode and a real synchronous service."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apipod.app.numbers import INT64_MAX, bounded_int
from tests.app.support import png_bytes, served
from tests.helpers import ServiceProcess, http_client, running_service
from tests.supervisor.support import wait_terminal
from tests.test_fuzz import schemathesis_command

KEY = "query-numbers-key-0123456789abcdef"
JUNK = ["²", "٣", "１２", "9" * 5000, "9" * 40, str(INT64_MAX + 1), "NaN", "inf", "1e400", "-1"]
#: ``wait`` takes any finite number of seconds and caps it (documented): not junk there.
CAPPED = {"9" * 40, str(INT64_MAX + 1)}


def test_bounded_int_takes_ascii_digits_up_to_the_bound_only() -> None:
    assert [bounded_int(t) for t in ("0", "7", "0042", str(INT64_MAX))] == [0, 7, 42, INT64_MAX]
    for text in [*JUNK, "", None, " 7", "+7", "7 ", "1_0", "0x10"]:
        assert bounded_int(text) is None, text
    assert bounded_int("100", maximum=99) is None and bounded_int("99", maximum=99) == 99


@pytest.fixture(scope="module")
def queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("query-numbers")
    settings = {"gpus": "none", "max_workers": 1, "api_key": KEY}
    with running_service(tmp, "queue_ok.py", **settings) as service:
        yield service


@pytest.fixture(scope="module")
def client(queue: ServiceProcess) -> Iterator[httpx.Client]:
    with http_client(queue.url, headers=queue.auth_headers(), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def file_path(client: httpx.Client) -> str:
    """The path of a stored result file (for ``/files`` with Range and ``expires``)."""
    image = base64.b64encode(png_bytes(8)).decode()
    job_id = client.post("/invert", json={"image": image}).json()["job_id"]
    assert wait_terminal(client, job_id)["status"] == "finished"
    url = client.get(f"/status/{job_id}", params={"inline": "none"}).json()["result"]["content"]
    return httpx.URL(url).path


@pytest.mark.slow
def test_junk_numbers_in_queries_and_headers_are_4xx_json(
    queue: ServiceProcess, client: httpx.Client, file_path: str
) -> None:
    job_id = file_path.split("/")[2]
    for junk in JUNK:
        requests = [
            (client, "/jobs", {"cursor": junk}, {}),
            (client, "/jobs", {"limit": junk}, {}),
            (client, f"/stream/{job_id}", {"last_event_id": junk}, {}),
            (client, f"/stream/{job_id}", {}, {"Last-Event-ID": junk.encode()}),
            (client, file_path, {"expires": junk}, {}),
            (client, "/echo", {"text": "a", "times": junk}, {}),
        ]
        if junk not in CAPPED:
            requests.append((client, f"/status/{job_id}", {"wait": junk}, {}))
        with http_client(queue.url, timeout=30) as anonymous:  # signed-URL check first
            requests.append((anonymous, file_path, {"expires": junk, "signature": "ab"}, {}))
            for who, path, params, headers in requests:
                response = who.get(path, params=params, headers=headers)
                where = (path, params, headers, response.status_code, response.text[:200])
                assert 400 <= response.status_code < 500, where
                assert isinstance(response.json(), dict), where


@pytest.mark.slow
def test_junk_byte_ranges_are_answered_without_a_server_error(
    client: httpx.Client, file_path: str
) -> None:
    size = len(client.get(file_path).content)
    for spec in ("9" * 5000 + "-", "0-" + "9" * 5000, "-" + "9" * 5000, "٣-", "²-", "0-²"):
        response = client.get(file_path, headers={"Range": f"bytes={spec}".encode()})
        assert response.status_code in (200, 206, 416), (spec, response.status_code)
    whole = client.get(file_path, headers={"Range": "bytes=-" + "9" * 5000})
    assert whole.status_code == 200 and len(whole.content) == size  # more than the file
    assert client.get(file_path, headers={"Range": "bytes=" + "9" * 30 + "-"}).status_code == 416


def run_schemathesis(url: str, workdir: Path, headers: dict[str, str], *options: str) -> None:
    """The operations of ``url``'s OpenAPI, their parameters (query ones included) at
    their boundaries and fuzzed, a few examples each: no 5xx."""
    command = [
        *schemathesis_command(),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "coverage,fuzzing",
        "--request-timeout",
        "20",
        "--max-examples",
        "5",
        "--generation-deterministic",
        *options,
    ]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=280, cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_in_a_queue_mode_service(
    queue: ServiceProcess, file_path: str
) -> None:
    # Not the endpoints whose jobs hold the one worker for seconds: a fuzzed ?wait= on
    # every job queued behind them would only wait.
    holders = "^/(spin|short|pin|steps)$"
    run_schemathesis(
        queue.url, queue.log_path.parent, queue.auth_headers(), "--exclude-path-regex", holders
    )


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_in_a_synchronous_service(tmp_path: Path) -> None:
    raising = "^/(async-fail|result)$"  # functions that raise: a 500 by design
    with served("sync_routes") as client:
        url = str(client.base_url).rstrip("/")
        run_schemathesis(url, tmp_path, {}, "--exclude-path-regex", raising)
