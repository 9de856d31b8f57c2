"""Deliberate breakages: does the test suite notice each of them?

Each mutant is one small edit of the source (an exact snippet and its replacement) that
breaks one behaviour, with the tests expected to catch it. The script copies the
repository (tracked and untracked, not ignored files) to a temporary folder, applies one
mutant at a time there, never in the working tree, and runs the mutant's tests with
``PYTHONPATH`` pointing at the copy, so the services those tests start run the broken
code too.

    python scripts/mutants.py                # every mutant (slow: tens of minutes)
    python scripts/mutants.py --list         # names, files and tests
    python scripts/mutants.py --only NAME    # one mutant (repeatable)
    python scripts/mutants.py --baseline     # first check the tests pass unmutated
    python scripts/mutants.py --each -v      # every named test, each failure printed

Outcomes: ``caught`` (a named test failed), ``survived`` (they all passed: a gap in the
tests), ``stale`` (the snippet is no longer in the file, or is there more than once: the
code moved on and the mutant needs rewriting), ``error`` (pytest could not run the tests,
e.g. a node id that no longer exists). Exit status 1 when any mutant survived, 2 when none
survived but some were stale or errors, 0 when all were caught.

Not part of CI (too slow). Run it before resolving an issue that changes the store, the
supervisor or auth, and quote its survivors. A caught mutant is only worth something when
the test fails *because of* the broken behaviour: read the failure (``-v`` prints it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = "tests/store/test_contract.py"
SAFETY = "tests/supervisor/test_safety_nets.py"
TIMEOUTS = "tests/supervisor/test_timeouts_cancel.py"
AUTH_MODES = "tests/app/test_auth_modes.py"
RESULTS = "tests/app/test_queue_results.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    find: str
    replace: str
    tests: tuple[str, ...]
    breaks: str


MUTANTS: tuple[Mutant, ...] = (
    # --- store -------------------------------------------------------------------------------
    Mutant(
        "store-claim-lifo",
        "apipod/store/sql.py",
        "ORDER BY seq LIMIT 1{lock_suffix}",
        "ORDER BY seq DESC LIMIT 1{lock_suffix}",
        (f"{CONTRACT}::test_claim_is_fifo_and_sets_the_lease",),
        "claim takes the newest queued job instead of the oldest (FIFO)",
    ),
    Mutant(
        "store-claim-races",
        "apipod/store/sql.py",
        "LIMIT 1{lock_suffix})\"\n        f\" AND status = 'queued' RETURNING",
        'LIMIT 1)"\n        f" RETURNING',
        (
            "tests/store/test_claim_concurrency.py::"
            "test_concurrent_claimers_take_every_job_once_in_order",
        ),
        "two workers can claim one job (no row lock, no re-check of its status)",
    ),
    Mutant(
        "store-lease-never-expires",
        "apipod/store/sql.py",
        'recover: str = release_sql("lease_expires_at < ?")',
        'recover: str = release_sql("lease_expires_at < ? AND 1 = 0")',
        (f"{CONTRACT}::test_recover_expired_leases",),
        "jobs whose lease ran out are never recovered",
    ),
    Mutant(
        "store-ownership-unchecked",
        "apipod/store/sql.py",
        "_OWNED = \"id = ? AND status = 'processing' AND worker = ?\"",
        "_OWNED = \"id = ? AND status = 'processing' AND (worker = ? OR 1 = 1)\"",
        (f"{CONTRACT}::test_only_the_owner_acts_on_a_job",),
        "any worker may heartbeat, report, finish or fail a job it does not own",
    ),
    Mutant(
        "store-finish-not-final",
        "apipod/store/sql.py",
        'f" lease_expires_at = NULL WHERE {_OWNED}"',  # the end of the finish statement
        '" lease_expires_at = NULL WHERE id = ? AND worker = ?"',
        (f"{CONTRACT}::test_a_job_ends_once", f"{CONTRACT}::test_late_finish_is_dropped"),
        "a terminal job can be finished again (terminal statuses are not final)",
    ),
    Mutant(
        "store-cancel-overrides-terminal",
        "apipod/store/sql.py",
        "\" lease_expires_at = NULL WHERE id = ? AND status IN ('queued', 'processing')\"",
        '" lease_expires_at = NULL WHERE id = ?"',
        (f"{CONTRACT}::test_cancel_leaves_terminal_jobs_as_they_are",),
        "cancel turns a finished job into a cancelled one",
    ),
    Mutant(
        "store-ttl-deletes-unfinished",
        "apipod/store/sql.py",
        '"SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?"\n'
        '        f" AND status IN {TERMINAL_SQL} ORDER BY finished_at LIMIT ?"',
        '"SELECT id FROM jobs WHERE coalesce(finished_at, created_at) < ?"\n'
        '        " ORDER BY finished_at LIMIT ?"',
        (f"{CONTRACT}::test_expire_never_deletes_unfinished_jobs_however_old",),
        "TTL cleanup deletes queued and running jobs older than the TTL (issue 16, 1)",
    ),
    Mutant(
        "store-ttl-ignores-age",
        "apipod/store/sqlstore.py",
        "cutoff = ts_in(-float(ttl_s))",
        "cutoff = ts_in(3600.0)",
        (f"{CONTRACT}::test_expire_deletes_only_old_terminal_jobs_in_batches",),
        "TTL cleanup deletes terminal jobs that just ended",
    ),
    Mutant(
        "store-queue-limit-sqlite",
        "apipod/store/sqlite.py",
        "if queued >= queue_size:",
        "if queued >= queue_size + 1000:",
        (
            f"{CONTRACT}::test_queue_full_counts_only_queued_jobs_of_the_endpoint[sqlite]",
            "tests/app/test_queue_api.py::test_back_pressure_429_under_concurrent_submits",
        ),
        "queue_size is not enforced on SQLite (no 429)",
    ),
    Mutant(
        "store-queue-limit-postgres",
        "apipod/store/postgres.py",
        '" < {queue_size} RETURNING seq"',
        '" < {queue_size} + 1000 RETURNING seq"',
        (f"{CONTRACT}::test_queue_full_counts_only_queued_jobs_of_the_endpoint[postgresql]",),
        "queue_size is not enforced on PostgreSQL",
    ),
    Mutant(
        "store-release-never-fails",
        "apipod/store/sql.py",
        '_REQUEUE = "attempts < max_attempts"',
        '_REQUEUE = "attempts < max_attempts + 100"',
        (f"{CONTRACT}::test_release_requeues_at_the_original_place_then_fails",),
        "a job whose worker keeps dying is requeued forever (max_attempts ignored)",
    ),
    Mutant(
        "store-shutdown-requeue-counts",
        "apipod/store/sql.py",
        "\"UPDATE jobs SET status = 'queued', attempts = attempts - 1, worker = NULL,\"",
        "\"UPDATE jobs SET status = 'queued', attempts = attempts, worker = NULL,\"",
        (
            "tests/supervisor/test_lifecycle.py::"
            "test_sigterm_past_the_grace_requeues_the_job_and_a_restart_runs_it",
        ),
        "a job interrupted by a graceful shutdown loses one of its attempts",
    ),
    # --- supervisor -----------------------------------------------------------------------------
    Mutant(
        "sup-start-releases-other-boxes",
        "apipod/supervisor/startup.py",
        'mine = [w for w in store.list_workers() if w.id.startswith(box_id + "/")]',
        "mine = list(store.list_workers())",
        (f"{SAFETY}::test_a_starting_box_leaves_other_boxes_jobs_alone",),
        "a starting box requeues the jobs live workers of other boxes run (issue 16, 3)",
    ),
    Mutant(
        "sup-no-worker-start-timeout",
        "apipod/supervisor/lifecycle.py",
        "if self.phase is Phase.STARTING and now - worker.started_at > start_timeout_s:",
        "if self.phase is Phase.STARTING and False:",
        (f"{SAFETY}::test_a_hung_worker_start_is_killed_after_worker_start_timeout",),
        "a hung on_worker_start is never killed (issue 16, 4)",
    ),
    Mutant(
        "sup-sighup-ignored",
        "apipod/supervisor/arbiter.py",
        "elif signum == signal.SIGHUP:",
        "elif signum == -1:",
        (f"{SAFETY}::test_sighup_replaces_every_worker_and_the_running_job_finishes",),
        "SIGHUP no longer replaces the workers (issue 16, 4)",
    ),
    Mutant(
        "sup-never-gives-up",
        "apipod/supervisor/lifecycle.py",
        "if self.load_failures >= MAX_LOAD_FAILURES:",
        "if self.load_failures >= MAX_LOAD_FAILURES * 1000:",
        (f"{SAFETY}::test_a_slot_whose_start_keeps_failing_is_backed_off_then_given_up",),
        "a slot whose on_worker_start keeps failing is restarted forever (issue 16, 4)",
    ),
    Mutant(
        "sup-stale-rows-kept",
        "apipod/supervisor/arbiter.py",
        "pruned = self._try_store(lambda: self.store.prune_workers(stale_s))",
        "pruned: list[str] | None = []",
        (f"{SAFETY}::test_worker_rows_silent_for_long_are_pruned",),
        "rows of workers whose box is gone stay listed forever (issue 16, 4)",
    ),
    Mutant(
        "sup-job-timeout-ignored",
        "apipod/supervisor/lifecycle.py",
        "if job.deadline and now > job.deadline]",
        "if job.deadline and now > job.deadline + 3600]",
        (f"{TIMEOUTS}::test_job_timeout_kills_the_worker_and_a_new_one_takes_its_place",),
        "a job past its timeout keeps running",
    ),
    Mutant(
        "sup-cancel-never-kills",
        "apipod/supervisor/lifecycle.py",
        "if now - self.lost_since <= grace_s:",
        "if now - self.lost_since <= grace_s + 3600:",
        (f"{TIMEOUTS}::test_cancel_kills_a_job_that_never_reports_after_the_grace",),
        "a cancelled job that never reports keeps its worker busy",
    ),
    Mutant(
        "sup-load-failure-no-backoff",
        "apipod/supervisor/lifecycle.py",
        "delay = backoff_s(self.load_failures, base=1.0, cap=60.0)",
        "delay = 0.0",
        (
            "tests/supervisor/test_failures.py::"
            "test_failed_worker_start_is_not_respawned_in_a_tight_loop",
            f"{SAFETY}::test_a_slot_whose_start_keeps_failing_is_backed_off_then_given_up",
        ),
        "a worker whose start fails is respawned in a tight loop (no back-off)",
    ),
    Mutant(
        "sup-crashed-job-not-released",
        "apipod/supervisor/lifecycle.py",
        'decisions.append(StoreCall("release", (job_id, worker.worker_id, error), done))',
        "done = None",
        (
            "tests/supervisor/test_failures.py::"
            "test_worker_exit_is_retried_then_fails_with_its_exit_code",
        ),
        "a crashed worker's job waits for its lease instead of being released at once",
    ),
    Mutant(
        "sup-shutdown-drops-job",
        "apipod/supervisor/lifecycle.py",
        'decisions.append(StoreCall("requeue", (job_id, worker.worker_id), done))',
        "done = None",
        (
            "tests/supervisor/test_lifecycle.py::"
            "test_sigterm_past_the_grace_requeues_the_job_and_a_restart_runs_it",
        ),
        "a job cut off by shutdown is left processing instead of requeued",
    ),
    # --- worker -----------------------------------------------------------------------------------
    Mutant(
        "worker-no-heartbeat",
        "apipod/worker/watch.py",
        "if not self._store.heartbeat(self._job_id, self._worker_id, self._lease_s):",
        "if False:",
        ("tests/worker/test_watch.py::test_heartbeats_keep_the_lease_alive",),
        "a running job's lease is never extended",
    ),
    Mutant(
        "worker-cancel-not-noticed",
        "apipod/worker/watch.py",
        "        if self.lost.is_set():\n            raise JobCancelled(",
        "        if False:\n            raise JobCancelled(",
        (
            "tests/worker/test_watch.py::test_report_raises_job_cancelled_after_a_cancel",
            f"{TIMEOUTS}::test_cancel_is_cooperative_when_the_job_reports_progress",
        ),
        "a cancelled job that reports progress keeps running",
    ),
    Mutant(
        "worker-media-type-lost",
        "apipod/payload.py",
        '"content_type": content_type or "application/octet-stream",',
        '"content_type": "application/octet-stream",',
        (f"{RESULTS}::test_a_media_result_keeps_its_name_and_content_type",),
        "a media result loses its content type in queue mode (issue 16, 5)",
    ),
    Mutant(
        "worker-row-update-lost",
        "apipod/worker/process.py",
        "        rss = self.rss_bytes()\n        with self._info_lock:\n"
        "            self.info = info = replace(self.info, rss_bytes=rss)",
        "        self.info = info = replace(self.info, rss_bytes=self.rss_bytes())",
        ("tests/worker/test_process.py::test_a_state_change_during_a_row_write_is_never_lost",),
        "a worker's state change made while its row is written is lost: /health shows it busy",
    ),
    Mutant(
        "logs-job-context-lost",
        "apipod/worker/process.py",
        "with job_context(job.id if len(jobs) == 1 else None, job.endpoint, job.batch_id):",
        "with job_context(None, None):",
        ("tests/test_logs.py::test_a_queue_service_logs_json_from_every_process",),
        "a worker's JSON log lines do not name the job they come from (issue 14, 7)",
    ),
    Mutant(
        "logs-child-crash-bare",
        "apipod/child.py",
        'logger.critical("%s crashed", what, exc_info=True)\n        sys.exit(1)',
        "raise",
        ("tests/test_logs.py::test_a_child_that_crashes_logs_its_traceback_as_one_json_line",),
        "a child's fatal traceback is printed as bare text in a JSON log (issue 14, 7)",
    ),
    Mutant(
        "logs-import-time-text",
        "apipod/cli.py",
        'early_format = args.log_format or os.environ.get("APIPOD_LOG_FORMAT", "text")',
        'early_format = args.log_format or "text"',
        (
            "tests/test_logs.py::"
            "test_import_time_logs_warnings_and_thread_errors_are_json_lines_too",
        ),
        "what a service logs while imported is text in a JSON log (issue 14, 7)",
    ),
    Mutant(
        "logs-uvicorn-own-format",
        "apipod/cli.py",
        "log_config=None,  # uvicorn's records go through our handler and format",
        "",
        ("tests/test_logs.py::test_a_synchronous_service_logs_json_with_the_flag",),
        "a synchronous service's uvicorn lines are text in a JSON log (issue 14, 7)",
    ),
    # --- front end and auth -------------------------------------------------------------------------
    Mutant(
        "auth-status-fast-path-open",
        "apipod/app/fastpath.py",
        "if handler is None or not has_valid_key(scope, self._pod.config.api_key):",
        "if handler is None or not (handler is self._status"
        " or has_valid_key(scope, self._pod.config.api_key)):",
        (
            f"{AUTH_MODES}::test_the_key_guards_every_route[serverless-env]",
            f"{AUTH_MODES}::test_the_key_guards_every_route[serverless-constructor]",
        ),
        "GET /status/{id} skips the key check in queue mode (issue 16, 2)",
    ),
    Mutant(
        "auth-fast-path-open",
        "apipod/app/fastpath.py",
        "if handler is None or not has_valid_key(scope, self._pod.config.api_key):",
        "if handler is None:",
        (
            "tests/app/test_auth.py::test_wrong_credentials_are_refused",
            f"{AUTH_MODES}::test_the_key_guards_every_route[dedicated-constructor]",
        ),
        "endpoint calls accept any Authorization header",
    ),
    Mutant(
        "auth-middleware-open",
        "apipod/app/auth.py",
        "or has_valid_key(scope, self._key_of())",
        "or True",
        ("tests/app/test_auth.py::test_every_other_route_needs_the_key",),
        "routes off the fast path (docs, /jobs, /cancel) need no key",
    ),
    Mutant(
        "app-wait-uncapped",
        "apipod/app/queue.py",
        "deadline = time.monotonic() + min(timeout, MAX_WAIT_S)",
        "deadline = time.monotonic() + timeout",
        (f"{SAFETY}::test_every_long_poll_is_capped_at_60_s",),
        "POST /status?wait= waits as long as asked, past 60 s (issue 16, 4)",
    ),
    Mutant(
        "app-result-wakeups-dropped",
        "apipod/app/queue.py",
        "if ended and self._loop is not None and not self._stop.is_set():",
        "if False:",
        (
            f"{RESULTS}::test_a_long_poll_answers_when_the_job_ends_not_at_the_next_poll",
            f"{RESULTS}::test_a_long_poll_on_a_running_job_is_woken_by_its_end",
        ),
        "long-polls wait for the fallback poll instead of the job's end (issue 16, 5)",
    ),
    Mutant(
        "app-ttl-sweep-off",
        "apipod/app/queue.py",
        "deleted = await self.call(self.store.expire, self.config.job_ttl, 200)",
        "deleted = 0",
        ("tests/app/test_queue_api.py::test_finished_jobs_expire_after_ttl",),
        "finished jobs and their files are kept forever",
    ),
    # --- media ------------------------------------------------------------------------------------------
    Mutant(
        "media-413-not-streamed",
        "apipod/app/inputs.py",
        "            if received > limit_bytes:\n                raise UploadTooLarge(limit_bytes)",
        "            if False:\n                raise UploadTooLarge(limit_bytes)",
        (
            "tests/app/test_errors_and_limits.py::"
            "test_60_mb_upload_is_refused_while_streaming_with_bounded_memory",
            f"{RESULTS}::test_a_chunked_upload_over_the_limit_is_refused_and_stores_nothing",
        ),
        "a chunked upload over the limit is read whole before it is refused (issue 16, 5)",
    ),
    Mutant(
        "media-ssrf-guard-off",
        "apipod/media/fetch.py",
        "if not (is_public(ip) or in_networks(ip, networks)):",
        "if False:",
        ("tests/media/test_fetch.py::test_default_policy_refuses_non_public_addresses",),
        "media URLs to loopback and private addresses are fetched (SSRF)",
    ),
    Mutant(
        "media-https-sni-dropped",
        "apipod/media/fetch.py",
        'extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}',
        "extensions = {}",
        ("tests/media/test_fetch.py::test_https_verifies_the_host_name_not_the_address",),
        "an HTTPS media URL is checked against the dialled address, not its host name"
        " (issue 16, 5: this test was skipped without cryptography)",
    ),
    # --- issue 22 (2, 4, 5, 6): batches, query numbers, media fetches, slow clients --------
    Mutant(
        "batch-error-shared-by-all",
        "apipod/worker/batch.py",
        "results = self._alone(ready, watches) if len(ready) > 1 else [exc]",
        "results = [exc] * len(ready)",
        (
            "tests/worker/test_batching.py::"
            "test_eight_clients_in_one_batch_never_read_each_others_input[sqlite-/parse]",
        ),
        "a batch whose call raises fails every job with the error that quotes one's input",
    ),
    Mutant(
        "batch-shared-progress-message-copied",
        "apipod/worker/batch.py",
        "self._send(self._watches, progress, None if shared else message)",
        "self._send(self._watches, progress, message)",
        (
            "tests/worker/test_batching.py::"
            "test_progress_messages_of_a_batch_reach_only_their_own_job[sqlite-/parse_shared]",
        ),
        "a shared JobProgress message (naming one job's input) reaches every job of the batch",
    ),
    Mutant(
        "batch-per-job-progress-to-all",
        "apipod/worker/batch.py",
        "return [JobProgress(functools.partial(self._send, [watch])) for watch in self._watches]",
        "return [JobProgress(functools.partial(self._send, self._watches)) for _ in self._watches]",
        (
            "tests/worker/test_batching.py::"
            "test_progress_messages_of_a_batch_reach_only_their_own_job[sqlite-/parse]",
        ),
        "list[JobProgress]: each job's reporter writes to every job of the batch",
    ),
    Mutant(
        "query-int-isdigit-only",
        "apipod/app/numbers.py",
        "if not text or not (text.isascii() and text.isdigit()) or len(text) > len(str(maximum)):",
        "if not text or not text.isdigit():",
        (
            "tests/app/test_query_numbers.py::"
            "test_bounded_int_takes_ascii_digits_up_to_the_bound_only",
            "tests/app/test_query_numbers.py::test_junk_numbers_in_queries_and_headers_are_4xx_json",
        ),
        "a cursor, expires or Last-Event-ID of '²' or 5,000 digits reaches int(): a 500",
    ),
    Mutant(
        "query-wait-any-script-digits",
        "apipod/app/queue.py",
        "wait = float(text) if text.isascii() else -1.0",
        "wait = float(text)",
        ("tests/app/test_query_numbers.py::test_junk_numbers_in_queries_and_headers_are_4xx_json",),
        "?wait= takes other scripts' digits ('٣' waits 3 s) instead of a 422",
    ),
    Mutant(
        "media-fetch-outlives-abandoned-request",
        "apipod/app/pod.py",
        "gone = asyncio.create_task(until_disconnect(request.receive, guard.cancel))",
        "gone = asyncio.create_task(asyncio.sleep(3600))",
        (
            "tests/app/test_media_fetch_release.py::"
            "test_abandoned_downloads_end_with_their_requests",
        ),
        "a media URL download goes on (thread, connection) after its client hung up",
    ),
    Mutant(
        "media-fetch-socket-not-shut-down",
        "apipod/media/guard.py",
        "sock.shutdown(socket.SHUT_RDWR)",
        "sock.fileno()",
        ("tests/app/test_media_fetch_release.py::test_answered_downloads_leave_nothing_behind",),
        "a download stuck in dribbled headers keeps its thread and connection after the answer",
    ),
    Mutant(
        "slow-heads-fill-the-connection-cap",
        "apipod/app/server.py",
        "if cap is not None and len(self.connections) >= cap:",
        "if False:",
        (
            "tests/app/test_slow_clients.py::"
            "test_slow_heads_and_long_polls_never_starve_health[max_connections]",
        ),
        "slow clients sending their heads fill the connection cap: /health answers 503",
    ),
)


# --- running -----------------------------------------------------------------------------------------
def copy_repository(destination: Path) -> None:
    """Tracked and untracked (not ignored) files of the working tree, without caches."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        relative = raw.decode()
        source = ROOT / relative
        if not source.is_file():  # deleted but still in the index
            continue
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def run_tests(
    copy: Path, tests: tuple[str, ...], timeout: float, each: bool = False
) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APIPOD_")}
    env["APIPOD_TEST_POSTGRES_URL"] = os.environ.get("APIPOD_TEST_POSTGRES_URL", "") or (
        "postgresql://postgres@127.0.0.1:5432/test"
    )
    env.update(PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    if not each:
        command.append("-x")  # the first failure is enough
    command += ["-o", "addopts=", "--timeout", str(int(timeout))]
    try:
        done = subprocess.run(
            command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout + 60
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace") if exc.stdout else ""
        return 124, output + "\n(the tests ran past the time limit)"
    return done.returncode, done.stdout + done.stderr


def failure_summary(output: str) -> str:
    lines = output.splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    errors = [line for line in lines if line.startswith("E ")][:12]
    return "\n".join(errors + failed) or "\n".join(lines[-12:])


def outcome(code: int) -> str:
    # pytest: 0 all passed, 1 some failed, 5 nothing collected, others: could not run
    if code == 0:
        return "survived"
    if code in (1, 124):
        return "caught"
    return "error"


def run_mutant(copy: Path, mutant: Mutant, timeout: float, verbose: bool, each: bool) -> str:
    path = copy / mutant.file
    if not path.is_file():
        print(f"  stale: {mutant.file} no longer exists")
        return "stale"
    original = path.read_text()
    found = original.count(mutant.find)
    if found != 1:
        where = "not found" if found == 0 else f"found {found} times"
        print(f"  stale: the snippet is {where} in {mutant.file}")
        return "stale"
    path.write_text(original.replace(mutant.find, mutant.replace))
    started = time.monotonic()
    try:
        code, output = run_tests(copy, mutant.tests, timeout, each)
    finally:
        path.write_text(original)
    result = outcome(code)
    print(f"  {result} (pytest exit {code}, {time.monotonic() - started:.0f} s)")
    if verbose or result == "error":
        print("    " + failure_summary(output).replace("\n", "\n    "))
    return result


def baseline(copy: Path, mutants: list[Mutant], timeout: float) -> bool:
    tests = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
    print(f"baseline: {len(tests)} test node(s) on the unmutated copy")
    code, output = run_tests(copy, tests, timeout * 4)
    if code != 0:
        print("  the tests fail without any mutant; fix that first:")
        print("    " + failure_summary(output).replace("\n", "\n    "))
        return False
    print("  passed")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only NAME")
    parser.add_argument("--baseline", action="store_true", help="first run tests unmutated")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per mutant")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each failure")
    parser.add_argument(
        "--each", action="store_true", help="run every named test, not only up to the first failure"
    )
    args = parser.parse_args(argv)
    selected = list(MUTANTS)
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTANTS})
        if unknown:
            parser.error(f"unknown mutant(s): {', '.join(unknown)} (see --list)")
        selected = [m for m in MUTANTS if m.name in args.only]
    if args.list:
        for mutant in selected:
            print(f"{mutant.name}: {mutant.breaks}\n  {mutant.file}")
            for test in mutant.tests:
                print(f"  - {test}")
        return 0
    results: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="apipod-mutants-") as folder:
        copy = Path(folder)
        copy_repository(copy)
        if args.baseline and not baseline(copy, selected, args.timeout):
            return 2
        for index, mutant in enumerate(selected, 1):
            print(f"[{index}/{len(selected)}] {mutant.name}: {mutant.breaks}")
            result = run_mutant(copy, mutant, args.timeout, args.verbose, args.each)
            results.setdefault(result, []).append(mutant.name)
    print("\nsummary: " + ", ".join(f"{len(v)} {k}" for k, v in sorted(results.items())))
    for kind in ("survived", "stale", "error"):
        if results.get(kind):
            print(f"{kind}: {', '.join(results[kind])}")
    if results.get("survived"):
        return 1
    return 2 if results.get("stale") or results.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
