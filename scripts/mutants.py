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
OPENAI_SYNC = "tests/app/test_openai_sync.py"
OPENAI_QUEUE = "tests/app/test_openai_queue.py"
HOSTILE = "tests/app/test_hostile_memory.py"
HOSTS = "tests/app/test_hosts.py"
TESTCLIENT = "tests/compat/test_testclient.py"
START = "tests/compat/test_start_simulate.py"


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
        "            if received > limit_bytes:\n                raise UploadTooLarge(limit_bytes, what)",
        "            if False:\n                raise UploadTooLarge(limit_bytes, what)",
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
    ),  # --- issue 21: drop-in round 2 ------------------------------------------------------------------
    Mutant(
        "compat-no-embedded-worker",
        "apipod/app/pod.py",
        'if self.api_only or self.config.role == "api":',
        "if True:",
        (f"{TESTCLIENT}::test_the_original_fixture_drives_a_queued_job_to_finished",),
        "under TestClient or a plain uvicorn, queued jobs are stored and never run",
    ),
    Mutant(
        "compat-embedded-worker-under-apipod-start",
        "apipod/supervisor/api_process.py",
        "    app.api_only = True",
        "    app.api_only = False",
        ("tests/supervisor/test_lifecycle.py::test_worker_is_recycled_after_max_jobs_per_worker",),
        "the API process of apipod start runs jobs too (no GPU pinning, no timeout kill)",
    ),
    Mutant(
        "compat-embedded-timeout-ignored",
        "apipod/worker/embedded.py",
        "if deadline is not None and now >= deadline",
        "if False",
        (f"{TESTCLIENT}::test_a_job_past_its_timeout_is_marked_timeout",),
        "an embedded job past its timeout runs on and is never marked timeout",
    ),
    Mutant(
        "compat-include-router-self",
        "apipod/app/pod.py",
        "        if router is self:\n            return\n",
        "",
        (
            f"{TESTCLIENT}::"
            "test_app_app_is_the_fastapi_application_and_including_it_in_itself_does_nothing",
        ),
        "app.app.include_router(app) doubles every route (or fails)",
    ),
    Mutant(
        "compat-union-base64-is-text",
        "apipod/params.py",
        "            return is_media_text(value)",
        "            return False",
        (f"{TESTCLIENT}::test_a_union_with_str_reads_media_as_the_original_did",),
        "base64 of an image sent to ImageFile | str arrives as a str",
    ),
    Mutant(
        "compat-model-defaults-required",
        "apipod/endpoint.py",
        "    if param.model_fills_itself:\n        return Field(default_factory=param.inner)\n",
        "",
        (f"{TESTCLIENT}::test_a_model_whose_fields_all_have_defaults_takes_an_empty_body",),
        "a model parameter whose fields all have defaults is a 422 on an empty body",
    ),
    Mutant(
        "compat-media-list-not-detected",
        "apipod/params.py",
        "        if self.container is MediaList and self.media_cls is MediaFile:",
        "        if False:",
        (f"{TESTCLIENT}::test_a_list_of_media_files_is_a_media_list_of_detected_kinds",),
        "List[MediaFile] items arrive as plain MediaFile, not ImageFile for a PNG",
    ),
    Mutant(
        "compat-bytes-stream-joined-base64",
        "apipod/worker/stream.py",
        "        if raw_bytes is not None and len(raw_bytes) == len(chunks):",
        "        if False:",
        (
            f"{TESTCLIENT}::test_a_bytes_stream_aggregates_to_the_base64_of_the_joined_bytes",
            "tests/worker/test_stream.py::test_a_bytes_stream_aggregates_to_one_base64",
        ),
        "a bytes stream's /status result is base64 texts joined ('AAE=Ag==')",
    ),
    Mutant(
        "compat-job-links-no-stream",
        "apipod/models.py",
        "    stream: str | None = None\n",
        "",
        (f"{TESTCLIENT}::test_a_job_result_round_trips_through_apipod_job_result",),
        "JobResult.model_validate drops links.stream",
    ),
    Mutant(
        "compat-start-host-first",
        "apipod/app/pod.py",
        "    def start(self, port: int | None = None, host: str | None = None, **settings: Any)",
        "    def start(self, host: str | None = None, port: int | None = None, **settings: Any)",
        (f"{START}::test_start_takes_the_port_first_as_the_original",),
        "app.start(8019) binds host '8019'",
    ),
    Mutant(
        "compat-start-errors-traceback",
        "apipod/cli.py",
        '        except APIPodError as exc:\n            setup_logging("info")\n'
        '            logger.error("apipod: %s", exc)\n            raise SystemExit(2) from None',
        "        except ZeroDivisionError:\n            raise",
        (f"{START}::test_start_errors_are_one_line_naming_its_arguments",),
        "app.start() errors are raw tracebacks",
    ),
    Mutant(
        "compat-simulate-env-ignored",
        "apipod/config.py",
        '    simulate = env.get("APIPOD_SIMULATE", "").strip()',
        '    simulate = ""',
        (f"{START}::test_apipod_simulate_variable_means_the_same",),
        "APIPOD_SIMULATE=serverless is silently ignored",
    ),
    # --- issue 19: OpenAI-compatible endpoints ----------------------------------------------
    Mutant(
        "openai-disconnect-keeps-job",
        "apipod/app/openai/jobs.py",
        "if not app.config.cancel_on_disconnect:",
        "if True:",
        (
            f"{OPENAI_QUEUE}::test_a_client_that_disconnects_cancels_its_job_within_one_yield",
            f"{OPENAI_QUEUE}::test_a_waiting_call_whose_client_gives_up_cancels_its_job",
        ),
        "an OpenAI client that disconnects leaves its job running on the worker",
    ),
    Mutant(
        "openai-returned-iterator-not-streamed",
        "apipod/worker/runner.py",
        "if spec.streams(result):",
        "if spec.is_stream:",
        (f"{OPENAI_QUEUE}::test_tool_call_deltas_and_the_async_client",),
        "a worker does not stream an iterator the function returned (return llm.stream(...))",
    ),
    Mutant(
        "openai-error-shape-dropped",
        "apipod/app/openai/errors.py",
        'return {"error": {"message": message, "type": kind, "param": param, "code": code}}',
        'return {"detail": message}',
        (f"{OPENAI_SYNC}::test_errors_have_openai_shape_and_status",),
        "errors on OpenAI routes lose OpenAI's {error: {message, type, param, code}} shape",
    ),
    Mutant(
        "openai-401-plain-shape",
        "apipod/app/openai/routes.py",
        "return errors.unauthorized()",
        "return unauthorized_response()",
        (f"{OPENAI_SYNC}::test_a_wrong_key_is_an_authentication_error",),
        "a wrong key on an OpenAI route is answered in APIPod's shape, not OpenAI's",
    ),
    Mutant(
        "openai-model-ignored",
        "apipod/app/openai/routes.py",
        "bindings = self._bindings[kind.name]\n        if len(bindings) == 1:",
        "bindings = self._bindings[kind.name]\n        if bindings:",
        (f"{OPENAI_SYNC}::test_models_list_and_the_model_picks_the_endpoint",),
        "the request's model does not pick among several endpoints of a kind",
    ),
    Mutant(
        "openai-tool-calls-finish-stop",
        "apipod/app/openai/wrap.py",
        'return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")',
        'return self.finish_reason or "stop"',
        (f"{OPENAI_SYNC}::test_tool_call_deltas_stream_and_merge",),
        "a stream of tool calls ends with finish_reason stop instead of tool_calls",
    ),
    Mutant(
        "openai-usage-chunk-dropped",
        "apipod/app/openai/chunks.py",
        "if self._include_usage:",
        "if False:",
        (f"{OPENAI_SYNC}::test_chat_stream_is_chunks_then_stop_then_usage",),
        "stream_options.include_usage is ignored",
    ),
    Mutant(
        "openai-no-job-header",
        "apipod/app/openai/routes.py",
        "response.headers[jobs.JOB_HEADER] = job.id",
        "pass",
        (f"{OPENAI_QUEUE}::test_chat_call_is_a_job_that_the_answer_names",),
        "a queued OpenAI call does not name its job (X-APIPod-Job-Id)",
    ),
    # --- issue 23, 11-12: what an independent mutation audit broke unnoticed -------------
    Mutant(
        "stream-replay-cut-at-read-batch",
        "apipod/app/stream.py",
        "                if more and job.is_terminal:\n                    continue",
        "                if False:\n                    continue",
        (
            "tests/app/test_stream_queue.py::"
            "test_a_finished_jobs_stream_replays_every_chunk_past_a_read_batch",
        ),
        "a finished job's /stream ends after its first 1,000 chunks (one store read)",
    ),
    Mutant(
        "stream-last-event-id-query-ignored",
        "apipod/app/stream.py",
        "after = resume_after(last_event_id if last_event_id is not None else resume)",
        "after = resume_after(last_event_id)",
        (
            "tests/app/test_stream_queue.py::"
            "test_the_last_event_id_query_parameter_resumes_like_the_header",
        ),
        "?last_event_id=n is ignored: the stream replays from chunk 1",
    ),
    Mutant(
        "batch-unstorable-result-raises",
        "apipod/worker/batch.py",
        "except Exception as exc:  # an unstorable result fails its job only",
        "except ZeroDivisionError as exc:",
        (
            "tests/worker/test_batch_claims.py::"
            "test_a_result_that_cannot_be_stored_fails_its_job_alone",
        ),
        "one result of a batch that cannot be stored raises out of the batch (worker crash)",
    ),
    Mutant(
        "webhook-retried-forever",
        "apipod/supervisor/webhooks.py",
        "    if (now - created).total_seconds() + delay > GIVE_UP_AFTER_S:\n        return None",
        "    if False:\n        return None",
        (
            "tests/supervisor/test_webhook_sender.py::"
            "test_a_failing_delivery_gives_up_an_hour_after_its_event",
        ),
        "a failing webhook is retried forever (the one-hour give-up is gone)",
    ),
    Mutant(
        "webhook-retry-rerenders-the-body",
        "apipod/supervisor/webhooks.py",
        "body = delivery.body or self._render(delivery)",
        "body = self._render(delivery)",
        (
            "tests/supervisor/test_webhook_sender.py::"
            "test_a_retry_resends_the_stored_signed_bytes_after_the_job_expired",
        ),
        "a webhook retry re-renders the body: a job expired between tries is never delivered",
    ),
    Mutant(
        "webhook-ssrf-checked-at-submit-only",
        "apipod/media/fetch.py",
        "    addresses = _allowed_addresses(parsed, job)\n    request = ",
        "    addresses = [str(ip) for ip in _resolve(parsed, job)]\n    request = ",
        (
            "tests/media/test_fetch.py::test_post_url_checks_the_address_again_at_delivery",
            "tests/media/test_fetch.py::"
            "test_post_url_refuses_non_public_addresses_before_connecting",
            "tests/supervisor/test_webhook_sender.py::test_the_ssrf_guard_runs_again_at_delivery",
        ),
        "no SSRF check at webhook delivery: DNS rebinding to 127.0.0.1 after the submit works",
    ),
    Mutant(
        "idempotency-hash-without-file-bytes",
        "apipod/app/idempotency.py",
        "digest.update(_file_digest(payload.data))",
        "pass",
        ("tests/app/test_idempotency.py::test_a_key_covers_the_file_bytes_in_every_encoding",),
        "Idempotency-Key: the same key with another file replays the first job, not a 409",
    ),
    Mutant(
        "metrics-durations-swapped-postgresql",
        "migrations/0006_metrics_idempotency.py",
        'extract(epoch FROM (NEW.{end}::timestamptz"\n        f" - NEW.{start}::timestamptz))',
        'extract(epoch FROM (NEW.{start}::timestamptz"\n        f" - NEW.{end}::timestamptz))',
        (
            "tests/store/test_contract_operations.py::"
            "test_job_durations_are_the_real_wait_and_run_times",
        ),
        "on PostgreSQL every wait/run histogram value is 0 (start and end swapped)",
    ),
    Mutant(
        "metrics-durations-swapped-sqlite",
        "migrations/0006_metrics_idempotency.py",
        "julianday(NEW.{end}) - julianday(NEW.{start})",
        "julianday(NEW.{start}) - julianday(NEW.{end})",
        (
            "tests/store/test_contract_operations.py::"
            "test_job_durations_are_the_real_wait_and_run_times",
        ),
        "on SQLite every wait/run histogram value is 0 (start and end swapped)",
    ),
    Mutant(
        "files-suffix-range-unclamped",
        "apipod/app/files.py",
        "count = min(last or 0, size)",
        "count = last or 0",
        ("tests/app/test_media_queue.py::test_file_route_ranges",),
        "Range: bytes=-N with N past the file's start is not clamped (0 bytes arrive)",
    ),
    Mutant(
        "queue-size-per-endpoint-ignored",
        "apipod/app/submit.py",
        "queue_size=spec.queue_size or config.queue_size,",
        "queue_size=config.queue_size,",
        ("tests/app/test_queue_api.py::test_an_endpoints_own_queue_size_bounds_its_queue",),
        "@app.endpoint(queue_size=N) is ignored: only the global queue_size bounds a queue",
    ),
    # --- issue 23, 9: /docs ----------------------------------------------------------------
    Mutant(
        "docs-builtins-first",
        "apipod/app/pod.py",
        "            openapi.user_endpoints_first(schema, self.endpoints)\n",
        "",
        (
            "tests/app/test_openapi.py::"
            "test_docs_list_the_users_endpoints_first_then_the_tagged_built_ins",
        ),
        "/docs lists the built-in routes before the user's endpoints",
    ),
    Mutant(
        "docs-files-get-head-one-operation-id",
        "apipod/app/files.py",
        'operation_id=f"{method.lower()}_file",',
        'operation_id="file",',
        ("tests/app/test_openapi.py::test_queue_mode_operation_ids_are_unique",),
        "GET and HEAD /files share an operation id (FastAPI warns on every schema build)",
    ),
    Mutant(
        "results-array-hint-every-call",
        "apipod/media/results.py",
        "        if endpoint in _hinted:\n            return\n        _hinted.add(endpoint)",
        "        pass",
        (
            "tests/app/test_outputs.py::"
            "test_an_unannotated_array_result_logs_one_hint_per_endpoint",
            "tests/app/test_media_queue.py::"
            "test_an_unannotated_array_is_a_json_list_and_the_log_hints_once",
        ),
        "the -> ImageFile hint for an unannotated array result is logged on every call",
    ),
    Mutant(
        "results-array-hint-missing",
        "apipod/media/results.py",
        "    if annotation is not Any or endpoint in _hinted:",
        "    if True:",
        (
            "tests/app/test_outputs.py::"
            "test_an_unannotated_array_result_logs_one_hint_per_endpoint",
            "tests/app/test_media_queue.py::"
            "test_an_unannotated_array_is_a_json_list_and_the_log_hints_once",
        ),
        "an unannotated numpy array result goes out as a nested list with no hint",
    ),
    # --- issue 20: the real-model examples ---------------------------------------------------
    Mutant(
        "ocr-annotated-image-without-boxes",
        "examples/ocr/service.py",
        "cv2.polylines(annotated, [corners.reshape(-1, 1, 2)], True, (0, 0, 255), 2)",
        "pass",
        ("tests/examples/test_ocr.py::test_reads_the_rendered_line_exactly_in_every_encoding",),
        "the annotated image comes back without the boxes drawn (issue 20)",
    ),
    Mutant(
        "ocr-batch-crops-not-split-per-job",
        "examples/ocr/service.py",
        "mine, texts = texts[: len(f.crops)], texts[len(f.crops) :]",
        "mine = texts[: len(f.crops)]",
        ("tests/examples/test_ocr.py::test_read_batch_recognises_queued_jobs_in_one_call",),
        "every job of a /read-batch call gets the first image's text (issue 20)",
    ),
    Mutant(
        "ocr-huge-image-decoded",
        "examples/ocr/service.py",
        "if max(width, height) > MAX_SIDE_PX:",
        "if False:",
        ("tests/examples/test_ocr.py::test_a_bad_image_fails_clearly_and_the_worker_lives_on",),
        "a 20,000 px wide image is decoded and read instead of refused (issue 20)",
    ),
    Mutant(
        "ocr-threads-ignore-worker-count",
        "examples/ocr/service.py",
        "return max(1, cores // max(1, workers))",
        "return max(1, cores)",
        ("tests/examples/test_ocr_stages.py::test_each_worker_takes_its_share_of_the_cores",),
        "every OCR worker runs one native thread per core, oversubscribing the box (issue 20)",
    ),
    Mutant(
        "ocr-stage-not-reported",
        "examples/ocr/service.py",
        'job_progress.set_status(0.2, "detect")\n    found = detect(pixels)',
        "found = detect(pixels)",
        ("tests/examples/test_ocr_stages.py::test_read_reports_decode_detect_recognise_in_order",),
        "/read does not report its detect stage (issue 20)",
    ),
    Mutant(
        "faceswap-target-returned-unchanged",
        "examples/faceswap/service.py",
        "swapped = paste_face(source_px, face, target_px, spot)",
        "swapped = target_px",
        ("tests/examples/test_faceswap.py::test_the_source_face_is_blended_onto_the_target_face",),
        "/swap-face answers the target without the source's face (issue 20)",
    ),
    Mutant(
        "faceswap-no-face-not-checked",
        "examples/faceswap/service.py",
        '    if not faces:\n        raise HTTPError(422, f"no face found in {name}")\n',
        "",
        ("tests/examples/test_faceswap_detector.py::test_no_face_is_a_422",),
        "an image without a face fails with an IndexError instead of a clear 422 (issue 20)",
    ),
    Mutant(
        "haar-no-variance-normalisation",
        "examples/faceswap/haar.py",
        "return 1.0 / np.where(norm > 0, np.sqrt(np.maximum(norm, 0)), 1.0)",
        "return np.ones_like(norm)",
        ("tests/examples/test_faceswap_detector.py::test_a_drawn_face_is_found_where_it_is",),
        "Haar feature values are not normalised by the window's contrast (issue 20)",
    ),
    Mutant(
        "gpu-check-skips-the-gpu-test",
        "scripts/gpu_check.py",
        "    if not gpus:\n        raise NotCheckable(",
        "    if False:\n        raise NotCheckable(",
        ("tests/test_gpu_check.py::test_without_a_gpu_the_check_fails_with_the_reason",),
        "gpu_check goes on without a GPU instead of saying there is none (issue 20)",
    ),
    # --- issue 22, points 1 and 3: memory by what arrives; URLs never follow the Host -----------
    Mutant(
        "h22-body-sized-by-content-length",
        "apipod/app/inputs.py",
        "    body = bytearray()\n    async for chunk in request.stream():",
        '    body = bytearray(int(request.headers.get("content-length") or 0))\n'
        "    async for chunk in request.stream():",
        (f"{HOSTILE}::test_a_declared_content_length_reserves_nothing",),
        "a body buffer is allocated by the declared Content-Length before bytes arrive",
    ),
    Mutant(
        "h22-json-values-uncounted",
        "apipod/jsonlimits.py",
        "    if values > MAX_VALUES:",
        "    if False:",
        (f"{HOSTILE}::test_json_of_millions_of_values_is_refused_before_it_is_built",),
        "a 10 MB JSON body of empty lists is parsed into millions of lists",
    ),
    Mutant(
        "h22-max-json-ignored",
        "apipod/app/inputs.py",
        "        if self.json_bytes < self.upload_bytes:",
        "        if False:",
        (f"{HOSTILE}::test_json_and_urlencoded_bodies_are_limited_by_max_json_mb",),
        "JSON and urlencoded bodies are limited by the upload limit only, not max_json_mb",
    ),
    Mutant(
        "h22-form-text-fields-uncapped",
        "apipod/app/forms.py",
        "            if self._fields_bytes > self._fields_limit:",
        "            if False:",
        (f"{HOSTILE}::test_a_large_form_text_field_is_a_413_that_says_to_send_a_file",),
        "a form's text fields are held in memory without the max_json_mb cap and its 413",
    ),
    Mutant(
        "h22-inline-budget-per-item",
        "apipod/payload.py",
        "        if self._inlined[0] + size > self.inline_max_bytes:",
        "        if size > self.inline_max_bytes:",
        (f"{HOSTILE}::test_inline_results_are_budgeted_per_answer",),
        "every result file under inline_result_max_mb is inlined, whatever the answer's total",
    ),
    Mutant(
        "h22-inline-outside-inflight-budget",
        "apipod/payload.py",
        "        if self.reserve is not None:",
        "        if False:",
        (
            "tests/test_payload.py::"
            "test_inline_results_share_one_budget_per_answer_and_the_process_budget",
        ),
        "many readers of large results at once inline them all, past max_inflight_mb",
    ),
    Mutant(
        "h22-host-unchecked",
        "apipod/app/hosts.py",
        'if host is not None and not _answers_as(policy, host, scope) and scope["path"] != "/health":',
        "if False:",
        (f"{HOSTS}::test_a_foreign_host_header_is_refused_not_signed",),
        "a status read with Host: attacker.example answers a signed URL to that host",
    ),
    Mutant(
        "h22-forwarded-from-anyone",
        "apipod/app/hosts.py",
        "        if policy.trusts(client[0] if client else None):",
        "        if True:",
        (f"{HOSTS}::test_forwarded_headers_from_an_untrusted_peer_are_ignored",),
        "X-Forwarded-Host from a peer outside forwarded_allow_ips is believed",
    ),
    Mutant(
        "h22-public-url-ignored",
        "apipod/app/queue.py",
        'base_url = self.config.public_url or (str(request.base_url) if request else "")',
        'base_url = str(request.base_url) if request else ""',
        (f"{HOSTS}::test_public_url_makes_every_url",),
        "result URLs follow the request's host although public_url is set",
    ),
    # --- issue 23 (a new user's first hour) --------------------------------------------------------
    Mutant(
        "store-cancel-empties-inputs",
        "apipod/store/sql.py",
        "\"UPDATE jobs SET status = 'cancelled', error = ?, finished_at = ?,\"",
        "\"UPDATE jobs SET status = 'cancelled', error = ?, finished_at = ?, inputs = '{}',\"",
        (
            f"{CONTRACT}::test_a_cancelled_job_keeps_its_inputs_and_files_until_its_ttl",
            f"{RESULTS}::test_a_cancelled_job_queued_or_running_is_retried_to_finished",
        ),
        "a cancelled job's inputs are emptied: its retry fails with 'Field required'",
    ),
    Mutant(
        "store-cancel-frees-files",
        "apipod/store/sqlstore.py",
        "            return self.get_state(job_id, with_result=True)\n        self._notify_result",
        "            return self.get_state(job_id, with_result=True)\n"
        "        self.discard_files(job_id)\n        self._notify_result",
        (
            f"{CONTRACT}::test_a_cancelled_job_keeps_its_inputs_and_files_until_its_ttl",
            f"{RESULTS}::test_a_cancelled_job_queued_or_running_is_retried_to_finished",
        ),
        "a cancelled job's uploaded files are deleted at once: its retry cannot read them",
    ),
    Mutant(
        "supervisor-second-sigint-ignored",
        "apipod/supervisor/arbiter.py",
        "            if self._stop_now_requested():\n                return False\n",
        "",
        (
            "tests/supervisor/test_lifecycle.py::"
            "test_a_second_ctrl_c_stops_at_once_and_requeues_the_running_job",
        ),
        "a second Ctrl-C during the shutdown's grace is ignored: the supervisor waits it out",
    ),
    Mutant(
        "config-data-dir-follows-cwd",
        "apipod/app/pod.py",
        "self.apply_config(Config.load(self.settings, flags=flags, defaults=defaults))",
        "self.apply_config(Config.load(self.settings, flags=flags))",
        ("tests/ops/test_jobs_cli.py::test_one_service_file_finds_the_same_jobs_from_any_folder",),
        "the default data dir follows the current folder, not the service file",
    ),
    Mutant(
        "reload-ignores-changes",
        "apipod/supervisor/arbiter.py",
        "if not changed or self._stopping:",
        "if True:",
        ("tests/supervisor/test_reload.py",),
        "apipod start --reload never restarts the API and the workers",
    ),
    Mutant(
        "reload-loses-the-running-job",
        "apipod/supervisor/reload.py",
        "writes.extend(d for d in slot.at_shutdown() if isinstance(d, StoreCall))",
        "slot.at_shutdown()",
        ("tests/supervisor/test_reload.py",),
        "a job running during a reload is not requeued: it waits for its lease, then counts",
    ),
    Mutant(
        "import-warning-never",
        "apipod/loader.py",
        "if took_s <= SLOW_IMPORT_S and grew_mb <= HEAVY_IMPORT_MB:",
        "if True:",
        (
            "tests/test_loader.py::test_a_slow_import_logs_one_warning_naming_on_worker_start",
            (
                "tests/supervisor/test_lifecycle.py::"
                "test_a_model_loaded_at_import_warns_once_and_stays_out_of_the_supervisor"
            ),
        ),
        "a service that loads a model at import time starts without a word",
    ),
    Mutant(
        "import-warning-in-every-process",
        "apipod/supervisor/api_process.py",
        "    app = load_app(target)\n",
        "    app = load_app(target, warn_if_heavy=True)\n",
        (
            (
                "tests/supervisor/test_lifecycle.py::"
                "test_a_model_loaded_at_import_warns_once_and_stays_out_of_the_supervisor"
            ),
        ),
        "the heavy-import warning is logged by the API process too, not once",
    ),
    Mutant(
        "supervisor-keeps-the-service",
        "apipod/cli.py",
        "if target is not None:  # apipod start",
        "if False:  # apipod start",
        (
            (
                "tests/supervisor/test_lifecycle.py::"
                "test_a_model_loaded_at_import_warns_once_and_stays_out_of_the_supervisor"
            ),
        ),
        "the supervisor keeps the service it imported (and a model loaded at import)",
    ),
    # --- issue 23: the deploy path installs this project -----------------------------------
    Mutant(
        "deploy-image-installs-apipod-by-name",
        "apipod-deploy/Dockerfile",
        'python3 -m pip install "$wheel" "$@"',
        'python3 -m pip install "apipod[gpu,postgres]" "$@"',
        (
            "tests/ops/test_deploy.py::"
            "test_the_dockerfile_installs_this_project_never_the_name_from_an_index",
        ),
        "the image installs `apipod` from the package index: another project (issue 23, 2)",
    ),
    Mutant(
        "deploy-compose-builds-every-box",
        "apipod-deploy/compose.yaml",
        "x-apipod: &apipod\n  image: apipod-service\n",
        "x-apipod: &apipod\n  build:\n    context: ..\n    dockerfile: apipod-deploy/Dockerfile\n"
        "  image: apipod-service\n",
        (
            "tests/ops/test_deploy.py::test_compose_runs_one_api_box_and_two_worker_boxes_on_postgres",
        ),
        "compose builds the same image once per box (issue 23, 2)",
    ),
    Mutant(
        "deploy-init-writes-no-wheel",
        "apipod/ops/scaffold.py",
        "wheel = write_wheel(folder / WHEELS)",
        "wheel = None",
        (
            "tests/ops/test_deploy_install.py::"
            "test_the_dockerfile_install_and_start_commands_serve_the_starter_service",
        ),
        "apipod init leaves wheels/ empty: the image cannot install APIPod (issue 23, 2)",
    ),
    Mutant(
        "deploy-init-writes-no-dockerignore",
        "apipod/ops/scaffold.py",
        'targets = {folder / "service.py": None, folder / IGNORE_FILE: source / IGNORE_TEMPLATE}',
        'targets = {folder / "service.py": None}',
        (
            "tests/ops/test_deploy_install.py::"
            "test_the_dockerfile_install_and_start_commands_serve_the_starter_service",
        ),
        "apipod init writes no .dockerignore: apipod-data/ and .venv go into the image"
        " (issue 23, 2)",
    ),
    Mutant(
        "deploy-systemd-unit-outside-the-venv",
        "apipod-deploy/apipod.service",
        "ExecStart=/opt/apipod/venv/bin/apipod start service.py",
        "ExecStart=/usr/local/bin/apipod start service.py",
        ("tests/ops/test_deploy.py::test_systemd_unit_passes_systemd_analyze_verify",),
        "the systemd unit starts an apipod outside the venv it installs into (issue 23, 2)",
    ),
    Mutant(
        "store-psycopg-hint-installs-another-project",
        "apipod/store/__init__.py",
        "pip install 'psycopg[binary]>=3.2' (APIPod's",
        "pip install 'apipod[postgres]' (APIPod's",
        (
            "tests/store/test_postgres.py::"
            "test_without_psycopg_the_error_names_the_driver_not_the_index_name",
        ),
        "the missing-driver hint installs apipod from the index: another project (issue 23, 2)",
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
    # --- merge of issues 21 and 23: the embedded worker and the data dir beside the service ---
    Mutant(
        "embedded-worker-shares-the-data-dir",
        "apipod/worker/embedded.py",
        "self._data_lock = None if config.database_url else DataDirLock(config.data_dir)",
        "self._data_lock = None",
        (
            "tests/compat/test_testclient.py::"
            "test_an_embedded_worker_never_shares_a_sqlite_data_dir_with_another_runner",
        ),
        "a TestClient's embedded worker runs the jobs of an 'apipod start' on the same data dir",
    ),
    Mutant(
        "json-limit-skips-cut-out-text",
        "apipod/app/jsonbody.py",
        "        if not files_only:  # the cut-out text becomes a str in memory: it counts as JSON",
        "        if False:",
        (
            "tests/app/test_jsonbody.py::"
            "test_a_long_base64_like_text_for_a_str_parameter_counts_against_max_json_mb",
        ),
        "a long base64-like str value beside media escapes max_json_mb and the in-flight budget",
    ),
    Mutant(
        "openai-transcription-form-unbounded",
        "apipod/app/openai/bodies.py",
        "            limited.headers, limited.stream(), limits.json_bytes, memory.take",
        "            limited.headers, limited.stream(), limits.upload_bytes, memory.take",
        (
            "tests/app/test_openai_sync.py::"
            "test_a_transcription_form_text_field_is_held_to_max_json_mb",
        ),
        "a transcription form's text field may be as large as an upload, held in memory",
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
