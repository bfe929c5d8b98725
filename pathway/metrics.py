"""Prometheus metrics: request latency per endpoint, decisions by phase, write-back outcomes,
outbox depth. One registry per app (tests build many apps).

Under `pathway serve` (several gunicorn workers) PROMETHEUS_MULTIPROC_DIR is set: every worker
writes its samples there and `/metrics` adds up all workers, whichever one the scrape reaches.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "pathway_request_seconds",
            "Request latency by endpoint and status class",
            ("endpoint", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "pathway_decisions_total",
            "Pathway decisions by service and phase",
            ("service", "phase"),
            registry=self.registry,
        )
        self.writeback = Counter(
            "pathway_writeback_total",
            "Write-back outcomes: written, unchanged, unchanged-in-prefetch, "
            "fallback-document-reference, fallback-system-actions, retry, dead, not-queued",
            ("outcome",),
            registry=self.registry,
        )
        self.writeback_errors = Counter(
            "pathway_writeback_errors_total",
            "Failed write-back attempts by the FHIR server's HTTP status (no-answer: none)",
            ("status",),
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "pathway_outbox_depth",
            "Writes waiting in the outbox",
            registry=self.registry,
            multiprocess_mode="max",  # the outbox is shared: every worker sees the same depth
        )

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)
