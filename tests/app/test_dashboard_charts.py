"""The dashboard's per-minute charts from job endings (no server needed)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from apipod.app.dashboard import CHART_MINUTES, minute_charts


def test_minute_charts_count_and_rank_the_last_hour() -> None:
    now = datetime(2026, 1, 1, 12, 30, 30, tzinfo=timezone.utc)

    def ending(minutes_ago: float, run_s: float, status: str = "finished") -> tuple:
        end = now - timedelta(minutes=minutes_ago)
        return ("/a", status, end - timedelta(seconds=run_s), end)

    endings = [ending(0, s) for s in (1.0, 2.0, 3.0, 4.0, 100.0)]
    endings += [ending(0.2, 0, "failed"), ending(5, 7.0), ending(59.4, 1.0), ending(61, 1.0)]
    endings.append(("/a", "cancelled", None, now))  # never started
    charts = minute_charts(endings, now)
    assert len(charts["minutes"]) == CHART_MINUTES
    assert charts["minutes"][-1] == "2026-01-01T12:30:00.000000Z"
    assert charts["finished"][-1] == 5 and charts["failed"][-1] == 2
    assert charts["finished"][-6] == 1 and charts["p50_s"][-6] == 7.0
    assert charts["p50_s"][-1] == 3.0 and 4.0 < charts["p95_s"][-1] <= 100.0
    assert charts["finished"][0] == 1  # 59.4 minutes ago is still in; 61 is not
    assert sum(charts["finished"]) == 7
    assert charts["p50_s"][10] is None
