"""Prometheus metrics of one application, in a registry of its own."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000)


class Metrics:
    """The server's metrics; one instance per application so tests never share counts."""

    def __init__(self, pool_status: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "testoqa_http_requests",
            "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "testoqa_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route.",
            ["method", "route"],
            registry=self.registry,
        )
        self.executions = Counter(
            "testoqa_executions",
            "Executions received, by result: accepted, duplicate or rejected.",
            ["result"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "testoqa_execution_batch_size",
            "Executions per batch request.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "testoqa_auth_failures",
            "Requests rejected because their credentials were missing or invalid.",
            registry=self.registry,
        )
        pool = Gauge(
            "testoqa_db_pool_connections",
            "Database pool connections, by state: in_use or idle.",
            ["state"],
            registry=self.registry,
        )
        pool.labels("in_use").set_function(lambda: pool_status()["in_use"])
        pool.labels("idle").set_function(lambda: pool_status()["idle"])
