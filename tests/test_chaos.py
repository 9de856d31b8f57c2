"""A bounded chaos run (scripts/chaos.py has the long one): workers SIGKILLed about every
half second and the whole process tree killed once while jobs are submitted and run;
a quarter of the jobs stream, and 20 streams are read live across the kills."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "chaos.py"


def load_chaos():
    spec = importlib.util.spec_from_file_location("chaos", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chaos"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_no_accepted_job_is_lost_under_chaos(tmp_path: Path) -> None:
    chaos = load_chaos()
    report = chaos.run_chaos(tmp_path, jobs=300, clients=16, tree_kills=1, kill_every=0.5)
    assert report.accepted == 300
    assert report.tree_kills == 1
    assert report.worker_kills >= 5
    assert report.lost == []
    assert report.finished_without_work == []
    assert sum(report.statuses.values()) == 300
    assert set(report.statuses) <= {"finished", "failed"}, report.statuses
    assert report.statuses.get("finished", 0) >= 290, report.statuses
    assert report.stream_jobs >= 60 and report.followed_streams == 20
    assert report.wrong_stream_results == [] and report.stream_mismatches == []
    assert report.ok
