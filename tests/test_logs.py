"""Logs for machines: ``--log-format json`` writes one JSON object per line, naming the
job, endpoint, worker and GPU of each record; real services on loopback, both modes."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apipod import logs
from apipod.config import Config
from apipod.errors import ConfigError
from tests.helpers import SERVICES, ServiceProcess, apipod_command, free_port, service_env
from tests.supervisor.support import client_for, ready_workers, submit, wait_terminal, wait_until


@pytest.fixture
def json_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose records are written by the JSON formatter to a string, and nowhere
    else: it is not registered with ``logging`` (no parent, not in ``getLogger``'s table),
    so no other handler sees its records. pytest 9 attaches its capture handler to every
    registered non-propagating logger, and that handler fails the test on a record that
    cannot be formatted, which is what one test here logs on purpose."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.Logger("tests.logs.json", logging.INFO)
    logger.addHandler(handler)
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)
        logs.bind_process("supervisor")


def records(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as a JSON object (a line that is not one fails the test)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_record_names_its_process_and_the_running_job(json_lines: Any) -> None:
    logger, out = json_lines
    logs.bind_process("worker", worker="box-1", gpu=None)
    logger.info("outside any job")
    with logs.job_context("j1", "/greet", "b1"):
        logger.warning("inside %s", "the job")
        logger.info("a batch's job", extra={"job_id": "j2"})
    outside, inside, named = records(out.getvalue())
    assert outside["role"] == "worker" and outside["worker"] == "box-1"
    assert "gpu" in outside and outside["gpu"] is None  # a CPU worker says so
    assert "job_id" not in outside and "endpoint" not in outside
    assert inside["message"] == "inside the job" and inside["level"] == "warning"
    assert (inside["job_id"], inside["endpoint"], inside["batch_id"]) == ("j1", "/greet", "b1")
    assert named["job_id"] == "j2" and named["endpoint"] == "/greet"
    assert inside["logger"] == "tests.logs.json" and isinstance(inside["pid"], int)
    assert inside["time"].endswith("Z") and "T" in inside["time"]


def test_a_traceback_stays_inside_its_one_line(json_lines: Any) -> None:
    logger, out = json_lines
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logger.exception("it failed")
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "it failed"
    assert "Traceback" in record["exc_info"] and "ValueError: bad" in record["exc_info"]


def test_the_job_context_ends_with_its_block(json_lines: Any) -> None:
    logger, out = json_lines
    with logs.job_context("j1", "/greet"):
        pass
    logger.info("after")
    assert "job_id" not in records(out.getvalue())[0]


def test_a_record_that_cannot_be_formatted_still_gives_one_json_line(json_lines: Any) -> None:
    logger, out = json_lines
    logger.info("%s and %s", "only one")  # arguments that do not fit
    logger.info("odd extra", extra={"job_id": float("nan"), "worker": {(1, 2): "tuple key"}})
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    mismatched, odd = (json.loads(line, parse_constant=_no_constants) for line in lines)
    assert mismatched["message"].startswith("'%s and %s' (log arguments that do not fit")
    assert odd["job_id"] == "nan" and odd["message"] == "odd extra"


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def test_log_format_is_a_checked_setting() -> None:
    assert Config.load(env={"APIPOD_LOG_FORMAT": "json"}, flags={}).log_format == "json"
    assert Config.load(env={}).log_format == "text"
    with pytest.raises(ConfigError, match="log_format must be one of"):
        Config.load(env={"APIPOD_LOG_FORMAT": "xml"})


# --- real services -------------------------------------------------------------------------


def start(
    tmp_path: Path,
    *flags: str,
    service: str = "logging_json.py",
    crash_api: bool = False,
    **settings: object,
) -> ServiceProcess:
    port = free_port()
    args = apipod_command("start", str(SERVICES / service), *flags)
    env = service_env(tmp_path / "data", port=port, gpus="none", **settings)
    env.pop("CUDA_VISIBLE_DEVICES", None)  # only the workers' environment has it
    if crash_api:
        env["CRASH_API"] = "1"
    started = ServiceProcess(args, env, port, tmp_path / "service.log").start()
    if not crash_api:
        started.wait_until("/health", status=200, timeout=60)
    return started


def stopped_log(service: ServiceProcess) -> list[dict[str, Any]]:
    """Stop the service; every line it wrote, as JSON (the test fails on any other line)."""
    service.stop()
    return records(service.log_path.read_text())


@pytest.mark.slow
def test_a_queue_service_logs_json_from_every_process(tmp_path: Path) -> None:
    service = start(tmp_path, compute="serverless", max_workers=1, log_format="json")
    try:
        with client_for(service) as client:
            (worker,) = ready_workers(client, 1)
            done = wait_terminal(client, submit(client, "/greet", {"name": "ada"}))
            failed = wait_terminal(client, submit(client, "/greet", {"name": "fail"}))
    finally:
        lines = stopped_log(service)
    assert done["status"] == "finished" and failed["status"] == "failed"
    assert {line["role"] for line in lines} == {"supervisor", "api", "worker"}
    greeting = next(line for line in lines if line["message"] == "greeting ada")
    assert greeting["logger"] == "service.greet"  # the service's own logger
    assert greeting["job_id"] == done["job_id"] and greeting["endpoint"] == "/greet"
    assert greeting["worker"] == worker["id"] and greeting["gpu"] is None
    assert greeting["pid"] == worker["pid"]
    failure = next(line for line in lines if line["message"] == f"job {failed['job_id']} failed")
    assert failure["job_id"] == failed["job_id"] and failure["level"] == "error"
    assert "ValueError: no greeting for fail" in failure["exc_info"]
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert access and {line["role"] for line in access} == {"api"}


@pytest.mark.slow
def test_a_synchronous_service_logs_json_with_the_flag(tmp_path: Path) -> None:
    service = start(tmp_path, "--log-format", "json")
    try:
        response = httpx.post(service.url + "/greet", json={"name": "sync"}, timeout=30)
        assert response.json() == {"hello": "sync"}
        wait_until(lambda: "greeting sync" in service.log(), 10, "the greeting is logged")
        time.sleep(0.2)  # the access line follows the response
    finally:
        lines = stopped_log(service)
    greeting = next(line for line in lines if line["message"] == "greeting sync")
    assert greeting["endpoint"] == "/greet" and greeting["role"] == "api"
    assert any(line["logger"] == "uvicorn.access" for line in lines)
    assert any(line["logger"].startswith("uvicorn.error") for line in lines)


@pytest.mark.slow
def test_import_time_logs_warnings_and_thread_errors_are_json_lines_too(tmp_path: Path) -> None:
    service = start(tmp_path, service="logging_noisy.py", compute="serverless", log_format="json")
    try:
        with client_for(service) as client:
            ready_workers(client, 1)
            assert wait_terminal(client, submit(client, "/thread"))["status"] == "finished"
    finally:
        lines = stopped_log(service)  # fails on any line that is not JSON
    loading = [line for line in lines if line["message"] == "loading weights"]
    assert {line["role"] for line in loading} >= {"supervisor", "worker"}  # imported by both
    warned = [line for line in lines if line["logger"] == "py.warnings"]
    assert warned and "weights in an old format" in warned[0]["message"]
    thread = next(
        line for line in lines if "uncaught ValueError in thread helper" in line["message"]
    )
    assert thread["role"] == "worker" and "a helper thread failed" in thread["exc_info"]


@pytest.mark.slow
def test_a_child_that_crashes_logs_its_traceback_as_one_json_line(tmp_path: Path) -> None:
    service = start(
        tmp_path,
        service="logging_noisy.py",
        crash_api=True,
        compute="serverless",
        log_format="json",
    )
    assert service.process is not None
    assert service.process.wait(timeout=60) == 1  # an API that cannot start halts the service
    lines = records(service.log_path.read_text())
    crash = next(line for line in lines if line["message"] == "the API process crashed")
    assert crash["role"] == "api" and crash["level"] == "critical"
    assert "RuntimeError: the API process cannot import this service" in crash["exc_info"]
