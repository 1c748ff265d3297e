"""Prometheus metrics (prometheus-client), in cwalld's own registry, served at ``GET /metrics``.

Counters that code increments live here as module globals; values that belong to one running
daemon (queue depths, cache hits) are read at scrape time by ``DaemonCollector``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

CONTENT_TYPE = CONTENT_TYPE_LATEST
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes and friends

JOBS = Counter("cwalld_jobs", "AI job events", ["event"], registry=REGISTRY)  # completed, fallback_used, held, failed, retried, stalled
JOB_SECONDS = Histogram("cwalld_job_duration_seconds", "AI job attempt duration", ["outcome"], registry=REGISTRY,
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
AI_CALLS = Counter("cwalld_ai_calls", "AI API calls", ["call"], registry=REGISTRY)  # moderation, chat
AI_FAILURES = Counter("cwalld_ai_failures", "AI API failures", ["kind"], registry=REGISTRY)  # timeout, rate_limited, server, connection, other
AI_BREAKER = Gauge("cwalld_ai_breaker", "AI circuit breaker per call: 1 for its current state",
                   ["call", "state"], registry=REGISTRY)  # closed, open, half_open
AI_FALLBACKS = Counter("cwalld_ai_fallbacks", "Confessions published with a fallback reply", registry=REGISTRY)
MODERATION_REJECTIONS = Counter("cwalld_moderation_rejections", "Confessions rejected by moderation", registry=REGISTRY)
LOOP_LAG = Gauge("cwalld_event_loop_lag_seconds", "How late the event loop woke a 0.1 s sleep", registry=REGISTRY)
STORAGE_UNAVAILABLE = Counter("cwalld_storage_unavailable", "episodes of a database that could not take writes"
                              " (disk full, I/O error)", registry=REGISTRY)
BACKUPS = Counter("cwalld_backups", "Scheduled database backups", ["outcome"], registry=REGISTRY)  # ok, failed
SLOW_QUERIES = Counter("cwalld_slow_queries", "SQL statements slower than log.slow_query_ms", registry=REGISTRY)


class RequestMetrics:
    """HTTP requests by route (the pattern, not the path: bounded label values) and their latency.

    Why not prometheus-client's Counter and Histogram: each update takes a lock and walks the
    labels (measured ~10 % of a cached feed request's cost). Requests are all observed on the
    event loop's thread, so plain lists do; they become metric families only when scraped.
    """

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, list[float]] = {}  # route → per-bucket counts, then the sum

    def observe(self, resource: object | None, method: str, status: int, seconds: float) -> None:
        route = getattr(resource, "canonical", "unmatched")
        key = (route, method, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        hist = self.latency.get(route)
        if hist is None:
            hist = self.latency[route] = [0.0] * (len(self.BUCKETS) + 2)
        hist[bisect_left(self.BUCKETS, seconds)] += 1  # the last bucket before the sum is +Inf
        hist[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("cwalld_http_requests", "HTTP requests", labels=["route", "method", "status"])
        for (route, method, status), n in list(self.counts.items()):
            requests.add_metric([route, method, str(status)], n)
        yield requests
        seconds = HistogramMetricFamily("cwalld_http_request_duration_seconds", "HTTP request latency", labels=["route"])
        for route, hist in list(self.latency.items()):
            cumulative: list[tuple[str, float]] = []
            running = 0.0
            for bound, observed in zip((*map(str, self.BUCKETS), "+Inf"), hist[:-1]):
                running += observed
                cumulative.append((bound, running))
            seconds.add_metric([route], cumulative, hist[-1])
        yield seconds


REQUESTS = RequestMetrics()
REGISTRY.register(REQUESTS)
observe_request = REQUESTS.observe


class DaemonCollector:
    """Queue depths and cache hits of one daemon, read when Prometheus scrapes."""

    def __init__(self, queue_stats: Callable[[], dict[str, int]], hits: Callable[[], dict[str, int]],
                 misses: Callable[[], dict[str, int]]) -> None:
        self.queue_stats, self.hits, self.misses = queue_stats, hits, misses

    def collect(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily("cwalld_queue_jobs", "AI jobs by state", labels=["state"])
        for state, n in self.queue_stats().items():
            if state != "total":
                queue.add_metric([state], n)
        yield queue
        for name, values in (("cwalld_cache_hits", self.hits()), ("cwalld_cache_misses", self.misses())):
            family = CounterMetricFamily(name, f"Cache {name.rsplit('_', 1)[1]} by type", labels=["type"])
            for kind, n in values.items():
                family.add_metric([kind], n)
            yield family


def render(collector: DaemonCollector) -> bytes:
    extra = CollectorRegistry(auto_describe=False)
    extra.register(collector)
    return generate_latest(REGISTRY) + generate_latest(extra)
