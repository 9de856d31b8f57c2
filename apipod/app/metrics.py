"""``GET /metrics``: the Prometheus text format, computed from the job store.

The store is the truth (DESIGN §2): counters and histograms are kept by the database in
the transaction that changes a job (migration 0006), so every API process of every box
answers with the same job numbers, and they survive restarts. Only the process memory of
this API process and the GPU memory (through NVML, where it answers) are read locally.

Scrape it like any target (with ``api_key`` set, send the key)::

    scrape_configs:
      - job_name: apipod
        metrics_path: /metrics
        authorization: {credentials: "<api key>"}
        static_configs: [{targets: ["gpu-box-1:8000"]}]
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psutil
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from starlette.responses import Response

from apipod.app.openapi import OPERATIONS_TAG
from apipod.gpu import gpu_memory_used
from apipod.store.base import JobStore
from apipod.store.operations import DURATION_BUCKETS
from apipod.store.records import TERMINAL_STATUSES, JobMetrics, WorkerInfo, WorkerState

if TYPE_CHECKING:
    from fastapi import FastAPI

    from apipod.app.queue import QueueFrontEnd

logger = logging.getLogger(__name__)
_PROCESS = psutil.Process()
_HISTOGRAMS = {
    "wait": ("apipod_job_wait_seconds", "Time from submit to the first start of a job."),
    "run": ("apipod_job_run_seconds", "Time from the start to the end of a job's attempt."),
}


def install_metrics(app: FastAPI, queue: QueueFrontEnd) -> None:
    """Register ``GET /metrics`` (queue mode: the job numbers need the store)."""

    @app.router.get("/metrics", tags=[OPERATIONS_TAG], summary="Prometheus metrics")
    async def metrics() -> Response:
        body = await queue.call(render_metrics, queue.store)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


def render_metrics(store: JobStore) -> bytes:
    """The exposition text (blocking: reads the store)."""
    registry = CollectorRegistry(auto_describe=False)
    snapshot = (store.job_metrics(), store.list_workers(), store.webhook_delivery_counts())
    registry.register(_StoreCollector(*snapshot))
    return generate_latest(registry)


class _StoreCollector:
    """One scrape's metric families, from one snapshot of the store."""

    def __init__(
        self, jobs: JobMetrics, workers: list[WorkerInfo], deliveries: dict[str, int]
    ) -> None:
        self.jobs = jobs
        self.workers = workers
        self.deliveries = deliveries

    def collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield from self._queue()
        yield from self._histograms()
        yield from self._workers()
        yield from self._webhooks()
        yield from _gpu_memory()

    def _webhooks(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "apipod_webhook_deliveries",
            "Webhook deliveries of the stored jobs, per state (pending, delivered, failed).",
            labels=["state"],
        )
        for state in ("pending", "delivered", "failed"):
            family.add_metric([state], self.deliveries.get(state, 0))
        yield family

    def _counters(self) -> Iterator[Metric]:
        submitted = CounterMetricFamily(
            "apipod_jobs_submitted", "Jobs submitted, per endpoint.", labels=["endpoint"]
        )
        finished = CounterMetricFamily(
            "apipod_jobs_finished",
            "Jobs that ended, per endpoint and final status.",
            labels=["endpoint", "status"],
        )
        for (endpoint, event), count in sorted(self.jobs.counts.items()):
            if event == "submitted":
                submitted.add_metric([endpoint], count)
            elif event in {s.value for s in TERMINAL_STATUSES}:
                finished.add_metric([endpoint, event], count)
        yield submitted
        yield finished

    def _queue(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "apipod_queue_depth", "Jobs waiting, per endpoint.", labels=["endpoint"]
        )
        running = GaugeMetricFamily(
            "apipod_jobs_running", "Jobs being processed, per endpoint.", labels=["endpoint"]
        )
        endpoints = sorted({e for e, _ in self.jobs.counts} | {e for e, _ in self.jobs.active})
        for endpoint in endpoints:
            depth.add_metric([endpoint], self.jobs.active.get((endpoint, "queued"), 0))
            running.add_metric([endpoint], self.jobs.active.get((endpoint, "processing"), 0))
        yield depth
        yield running

    def _histograms(self) -> Iterator[Metric]:
        rows: dict[tuple[str, str], dict[str, tuple[int, float]]] = defaultdict(dict)
        for metric, endpoint, le, count, total in self.jobs.durations:
            rows[(metric, endpoint)][le] = (count, total)
        labels = [f"{bound:g}" for bound in DURATION_BUCKETS] + ["+Inf"]
        for metric, (name, doc) in _HISTOGRAMS.items():
            family = HistogramMetricFamily(name, doc, labels=["endpoint"])
            for (kind, endpoint), by_le in sorted(rows.items()):
                if kind != metric:
                    continue
                cumulative, buckets = 0, []
                for bound, label in zip([*DURATION_BUCKETS, float("inf")], labels, strict=True):
                    cumulative += by_le.get(label, (0, 0.0))[0]
                    buckets.append((floatToGoString(bound), cumulative))
                total = sum(value for _, value in by_le.values())
                family.add_metric([endpoint], buckets, total)
            yield family

    def _workers(self) -> Iterator[Metric]:
        states = GaugeMetricFamily(
            "apipod_workers", "Worker processes of every box, per state.", labels=["state"]
        )
        for state in WorkerState:
            states.add_metric([state.value], sum(1 for w in self.workers if w.state is state))
        yield states
        memory = GaugeMetricFamily(
            "apipod_process_resident_memory_bytes",
            "Resident memory of this API process and of every worker.",
            labels=["role", "worker"],
        )
        memory.add_metric(["api", f"api-{os.getpid()}"], _PROCESS.memory_info().rss)
        for worker in self.workers:
            if worker.rss_bytes is not None and worker.state is not WorkerState.FAILED:
                memory.add_metric(["worker", worker.id], worker.rss_bytes)
        yield memory


def _gpu_memory() -> Iterator[Metric]:
    """GPU memory in use per GPU index, where NVML is installed and answers."""
    used = gpu_memory_used()
    if used is None:
        return
    family = GaugeMetricFamily(
        "apipod_gpu_memory_used_bytes", "GPU memory in use (NVML), per GPU.", labels=["gpu"]
    )
    for index, value in used.items():
        family.add_metric([str(index)], value)
    yield family
