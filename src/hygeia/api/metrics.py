"""Prometheus metrics at ``/metrics``, with the standard ``prometheus-client`` library.

What is counted, per serving process:

- ``hygeia_http_requests_total{interaction, status}``: every answered request, by
  FHIR interaction (``read``, ``search-type``, ``create``, ``transaction``, ...,
  or ``auth``, ``health``, ``ready``, ``metrics``, ``other`` outside ``/fhir``)
  and HTTP status.  Both label sets are closed, so no request can create series.
- ``hygeia_http_request_duration_seconds{interaction}``: time from the request
  reaching the app to its answer being ready (a streamed download: to its first
  byte).
- ``hygeia_jobs{kind, state}``: background jobs waiting (``queued``) or
  ``running``, read from the database at scrape time.
- ``hygeia_db_pool_connections{state}``: the database connections of the
  scraped process, ``in_use`` or ``idle``; ``hygeia_db_pool_waiting``: its
  requests waiting for one (a pool too small for the load shows here first).

``hygeia serve --workers N`` forks N processes behind one port, and a scrape
reaches only one of them.  With ``PROMETHEUS_MULTIPROC_DIR`` naming an empty
directory in the server's environment, prometheus-client's multiprocess mode
sums all workers' counters and histograms on every scrape; without it each
process reports its own numbers (right for ``--workers 1``).  The pool gauges
are always those of the process that answered the scrape.

Who may read them: counts and latencies by interaction reveal how busy the
server is and with what, not patient data.  Without ``--auth`` (a loopback
server) they are open; with ``--auth`` they answer 403 unless the server was
started with ``--public-metrics`` (scrapers carry no SMART token), so expose
them to the scraper only.  Never audited.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any
from urllib.parse import parse_qsl

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from hygeia.fhir.outcome import Issue, operation_outcome
from hygeia.server import FhirService
from hygeia.server.extensions import Operations
from hygeia.server.rest.router import parse_route

log = logging.getLogger("hygeia.api")
METRICS_PATH = "/metrics"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# from a cached read (~1 ms) to a large search or a transaction (seconds)
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0)
_INTERACTION_NAME = re.compile(r"[a-z][a-z-]{0,39}")
_OUTSIDE_FHIR = {"/health": "health", "/ready": "ready", METRICS_PATH: "metrics"}
# (status, headers, body, media type), as the auth endpoints answer
Answer = tuple[int, dict[str, str], bytes, str]


class Metrics:
    """This process's request counters and latency histograms, and the scrape."""

    def __init__(self, service: FhirService) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.requests = Counter("hygeia_http_requests", "Requests answered, by FHIR "
                                "interaction and HTTP status.", ["interaction", "status"],
                                registry=self.registry)
        self.latency = Histogram("hygeia_http_request_duration_seconds", "Time to answer a "
                                 "request, by FHIR interaction.", ["interaction"],
                                 buckets=_BUCKETS, registry=self.registry)
        self.registry.register(JobQueue(service))
        self.registry.register(DatabasePool(service))

    def observe(self, environ: dict[str, Any], status: int, seconds: float) -> None:
        interaction = interaction_of(environ, self.service.operations)
        self.requests.labels(interaction, str(status)).inc()
        self.latency.labels(interaction).observe(seconds)

    def answer(self, environ: dict[str, Any]) -> Answer | None:
        """The scrape, or None when the path is not ``/metrics``."""
        if environ.get("PATH_INFO") != METRICS_PATH:
            return None
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return _outcome(405, "not-supported", "/metrics answers GET and HEAD only.")
        settings = self.service.settings
        if settings.auth.enabled and not settings.public_metrics:
            return _outcome(403, "forbidden", "Metrics are closed on a server with "
                            "authorization; start it with --public-metrics to let its "
                            "scraper read them.")
        return 200, {"Cache-Control": "no-store"}, generate_latest(self._scraped()), \
            CONTENT_TYPE_LATEST

    def _scraped(self) -> CollectorRegistry:
        directory = os.environ.get(MULTIPROCESS_ENV)
        if not directory:
            return self.registry
        registry = CollectorRegistry()  # every worker's files, summed
        MultiProcessCollector(registry, directory)
        registry.register(JobQueue(self.service))
        registry.register(DatabasePool(self.service))
        return registry


def interaction_of(environ: dict[str, Any], operations: Operations | None = None) -> str:
    """The FHIR interaction a request asked for, from a closed set of names (an operation
    by its registered name; one not registered is ``unknown``)."""
    path = environ.get("PATH_INFO", "")
    if path in _OUTSIDE_FHIR:
        return _OUTSIDE_FHIR[path]
    if path.startswith("/auth/") or path.endswith("/.well-known/smart-configuration"):
        return "auth"
    if path != "/fhir" and not path.startswith("/fhir/"):
        return "other"
    query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    try:  # conditional interactions are told apart by their query
        name = parse_route(environ["REQUEST_METHOD"], path[len("/fhir"):], query,
                           operations).interaction
    except Exception:  # FhirError for a bad path; counting must never fail a request
        return "unknown"
    # the router names interactions with literals; this keeps it so if that ever changes
    return name if _INTERACTION_NAME.fullmatch(name) else "unknown"


class JobQueue(Collector):
    """``hygeia_jobs{kind, state}``: jobs waiting or running, counted at scrape time."""

    def __init__(self, service: FhirService) -> None:
        self.service = service

    def collect(self) -> Any:
        family = GaugeMetricFamily("hygeia_jobs", "Background jobs (export, import, "
                                   "reindex) queued or running.", labels=["kind", "state"])
        try:
            with self.service.request_limits():
                counts = self.service.jobs.unfinished_by_kind()
        except Exception as error:  # the database is down: the request counts still count
            log.warning("metrics: the job queue could not be read: %s", error)
            return
        for (kind, state), count in sorted(counts.items()):
            family.add_metric([kind, state], count)
        yield family


class DatabasePool(Collector):
    """``hygeia_db_pool_connections{state}`` and ``hygeia_db_pool_waiting``: this
    process's database connections, read from the pool at scrape time (no query)."""

    def __init__(self, service: FhirService) -> None:
        self.service = service

    def collect(self) -> Any:
        usage = self.service.repository.pool_usage()
        connections = GaugeMetricFamily("hygeia_db_pool_connections", "Database "
                                        "connections of this process, in use or idle.",
                                        labels=["state"])
        connections.add_metric(["in_use"], usage.in_use)
        connections.add_metric(["idle"], usage.size - usage.in_use)
        yield connections
        yield GaugeMetricFamily("hygeia_db_pool_waiting", "Requests of this process "
                                "waiting for a database connection.", value=usage.waiting)


def _outcome(status: int, code: str, text: str) -> Answer:
    body = orjson.dumps(operation_outcome([Issue(code, text)]))
    return status, {}, body, "application/fhir+json"
