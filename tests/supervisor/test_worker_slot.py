"""The worker slot state machine alone: events in, decisions out (no processes)."""

from __future__ import annotations

import multiprocessing
from types import SimpleNamespace

from apipod.config import Config
from apipod.store.records import JobStatus, WorkerState
from apipod.supervisor.children import WorkerProcess
from apipod.supervisor.lifecycle import MAX_LOAD_FAILURES, Kill, Phase, StoreCall, WorkerSlot
from apipod.worker.messages import (
    EXIT_LOAD_FAILED,
    EXIT_RECYCLE,
    Busy,
    Idle,
    LoadFailed,
    Ready,
    WorkerSpec,
)


def started_slot(now: float = 100.0) -> WorkerSlot:
    slot = WorkerSlot(index=0, gpu="1")
    spec = WorkerSpec("box/w0.abc", 0, "1", "svc.py", Config(), "host")
    process = multiprocessing.get_context("spawn").Process(target=print)
    worker = WorkerProcess(spec=spec, process=process, conn=None, started_at=now)  # type: ignore[arg-type]
    slot.started(worker)
    return slot


def methods(decisions: list) -> list[str]:
    return [d.method if isinstance(d, StoreCall) else "kill" for d in decisions]


def test_a_crash_while_busy_releases_the_job_and_backs_off() -> None:
    slot = started_slot()
    slot.on_message(Ready(), 100.0)
    slot.on_message(Busy("job1", None), 101.0)
    assert slot.phase is Phase.BUSY
    decisions = slot.on_exit(-9, 102.0)
    assert methods(decisions) == ["release", "remove_worker"]
    assert decisions[0].args == ("job1", "box/w0.abc", "worker crashed (exit code -9)")
    assert slot.phase is Phase.EMPTY and slot.next_start_at == 102.5  # 0.5 s back-off
    assert not slot.due_to_start(102.4) and slot.due_to_start(102.5)


def test_a_recycled_worker_is_replaced_at_once_and_its_idle_job_is_not_released() -> None:
    slot = started_slot()
    slot.on_message(Ready(), 100.0)
    slot.on_message(Busy("job1", None), 100.0)
    slot.on_message(Idle("job1", 1), 100.5)
    assert methods(slot.on_exit(EXIT_RECYCLE, 101.0)) == ["remove_worker"]
    assert slot.next_start_at == 101.0


def test_a_job_past_its_timeout_is_killed_and_timed_out_once() -> None:
    slot = started_slot()
    slot.on_message(Ready(), 100.0)
    slot.on_message(Busy("job1", 2.0), 100.0)
    assert slot.check_clock(101.9, 600) == []
    decisions = slot.check_clock(102.1, 600)
    assert isinstance(decisions[0], Kill) and methods(decisions[1:]) == ["time_out"]
    assert slot.check_clock(103.0, 600) == []
    assert methods(slot.on_exit(-9, 103.0)) == ["remove_worker"]  # nothing to release
    assert slot.next_start_at == 103.0


def test_a_job_no_longer_owned_is_killed_after_the_grace() -> None:
    slot = started_slot()
    slot.on_message(Ready(), 100.0)
    slot.on_message(Busy("job1", None), 100.0)
    cancelled = SimpleNamespace(is_terminal=True, worker="box/w0.abc", status=JobStatus.CANCELLED)
    assert slot.check_jobs([cancelled], 101.0, 5.0) == []
    assert slot.check_jobs([cancelled], 105.9, 5.0) == []
    assert isinstance(slot.check_jobs([cancelled], 106.1, 5.0)[0], Kill)


def test_load_failures_back_off_then_give_up_and_a_success_clears_the_record() -> None:
    slot = started_slot()
    slot.on_message(LoadFailed("RuntimeError: no weights", "Traceback ..."), 100.0)
    decisions = slot.on_exit(EXIT_LOAD_FAILED, 100.0)
    assert methods(decisions) == ["upsert_worker"]
    assert decisions[0].args[0].state is WorkerState.FAILED
    assert slot.retrying_start and slot.next_start_at == 101.0
    for _ in range(2, MAX_LOAD_FAILURES + 1):
        worker = slot.worker or started_slot().worker
        slot.started(worker)
        slot.on_message(LoadFailed("RuntimeError: no weights", "tb"), 100.0)
        slot.on_exit(EXIT_LOAD_FAILED, 100.0)
    assert slot.phase is Phase.GIVEN_UP and not slot.due_to_start(1e9)
    assert slot.load_traceback == "tb"

    again = started_slot()
    again.on_message(LoadFailed("E", "tb"), 0.0)
    again.on_exit(EXIT_LOAD_FAILED, 0.0)
    again.started(started_slot().worker)
    assert methods(again.on_message(Ready(), 5.0)) == ["remove_worker"]  # the failed row
    assert not again.retrying_start


def test_a_start_that_takes_too_long_is_killed_and_counted_as_a_load_failure() -> None:
    slot = started_slot(now=100.0)
    assert slot.check_clock(699.0, 600) == []
    [kill] = slot.check_clock(701.0, 600)
    assert isinstance(kill, Kill) and "did not finish within 600 s" in kill.why
    assert methods(slot.on_exit(-9, 701.0)) == ["upsert_worker"]
    assert slot.load_failures == 1


def test_a_crash_mid_batch_releases_each_job_of_the_batch() -> None:
    slot = started_slot()
    slot.on_message(Ready(), 100.0)
    slot.on_message(Busy("j1", None, (("j2", 5.0), ("j3", None))), 101.0)
    assert slot.job_id == "j1" and list(slot.jobs) == ["j1", "j2", "j3"]
    decisions = slot.on_exit(-9, 102.0)
    assert methods(decisions) == ["release", "release", "release", "remove_worker"]
    assert [d.args[0] for d in decisions[:3]] == ["j1", "j2", "j3"]


def test_each_job_of_a_batch_times_out_on_its_own_and_the_last_one_kills() -> None:
    slot = started_slot()
    slot.on_message(Ready(), 100.0)
    slot.on_message(Busy("j1", 1.0, (("j2", 3.0), ("j3", 2.0))), 100.0)
    assert slot.check_clock(100.9, 600) == []
    first = slot.check_clock(101.1, 600)
    assert methods(first) == ["time_out"] and first[0].args[0] == "j1"
    assert "timeout of 1 s" in first[0].args[2] and not slot.recycling
    assert [d.args[0] for d in slot.check_clock(102.1, 600)] == ["j3"]
    last = slot.check_clock(103.1, 600)
    assert methods(last) == ["kill", "time_out"] and last[1].args[0] == "j2"
    assert methods(slot.on_exit(-9, 103.2)) == ["remove_worker"]  # nothing left to release


def test_a_batch_runs_on_while_one_of_its_jobs_is_still_owned() -> None:
    slot = started_slot()
    slot.on_message(Ready(), 100.0)
    slot.on_message(Busy("j1", None, (("j2", None),)), 100.0)
    cancelled = SimpleNamespace(is_terminal=True, worker="box/w0.abc", status=JobStatus.CANCELLED)
    owned = SimpleNamespace(is_terminal=False, worker="box/w0.abc", status=JobStatus.PROCESSING)
    assert slot.check_jobs([cancelled, owned], 101.0, 5.0) == []
    assert slot.check_jobs([cancelled, owned], 110.0, 5.0) == []
    assert slot.check_jobs([cancelled, None], 111.0, 5.0) == []
    assert isinstance(slot.check_jobs([cancelled, None], 116.1, 5.0)[0], Kill)


def test_a_batch_is_requeued_job_by_job_at_shutdown() -> None:
    slot = started_slot()
    slot.on_message(Ready(), 100.0)
    slot.on_message(Busy("j1", None, (("j2", None),)), 100.0)
    decisions = slot.at_shutdown()
    assert methods(decisions) == ["requeue", "requeue", "remove_worker"]
    assert [d.args[0] for d in decisions[:2]] == ["j1", "j2"]
