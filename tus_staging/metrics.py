"""Prometheus metrics (the instruments), correct under several gunicorn workers.

With ``--workers N`` the master sets PROMETHEUS_MULTIPROC_DIR before any worker imports
prometheus_client, so each worker writes its counters to files there and ``/metrics``
sums them; with one worker the ordinary in-process registry is used. The number of open
uploads is read from Redis at scrape time, so it is the same whichever worker answers.
"""

from __future__ import annotations

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def exposition() -> bytes:
    """This process's counters, or all workers' when running under several."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


REQUESTS = Counter(
    "tus_staging_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
BYTES_RECEIVED = Counter(
    "tus_staging_bytes_received_total", "upload bytes committed (durable and acknowledged)"
)
UPLOAD_EVENTS = Counter(
    "tus_staging_uploads_total", "uploads by lifecycle event", ["event"]
)  # created, finished, terminated, expired
LOCK_WAITS = Counter("tus_staging_lock_waits_total", "lock acquisitions that found the upload busy")
LOCK_RELEASES = Counter(
    "tus_staging_lock_releases_total", "streaming requests that gave up their lock when asked"
)
FINALIZE_SECONDS = Histogram(
    "tus_staging_finalize_seconds",
    "time from the last committed byte to the file staged with its sidecar",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
