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

from store import md5_lanes
from store.uploads import StoreObservers

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
IETF_REQUESTS = Counter(
    "tus_staging_ietf_requests_total",
    "requests of the IETF resumable-upload draft, by the interop version they name",
    ["interop"],
)  # interop: 6, 7, 8, none, other
LOCK_WAITS = Counter("tus_staging_lock_waits_total", "lock acquisitions that found the upload busy")
LOCK_RELEASES = Counter(
    "tus_staging_lock_releases_total", "streaming requests that gave up their lock when asked"
)
FINALIZE_SECONDS = Histogram(
    "tus_staging_finalize_seconds",
    "time from the last committed byte to the file staged with its sidecar",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
REPLICA_WAITS = Counter(
    "tus_staging_replica_waits_total",
    "upload state changes that waited for Redis replicas (WAIT), by outcome",
    ["outcome"],
)  # acknowledged, timed_out (the change stands on the master alone)
REPLICA_WAIT_SECONDS = Histogram(
    "tus_staging_replica_wait_seconds",
    "an upload state change and its wait for replicas, from sending to acknowledgement",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
MD5_UPDATES = Counter(
    "tus_staging_md5_updates_total",
    "md5 updates (upload and on-demand metadata blocks): through the lanes engine, or inline",
    ["path"],
)  # path: lanes, inline
MD5_PASS_BLOCKS = Counter(
    "tus_staging_md5_pass_blocks_total", "64-byte steps of lockstep passes of the md5 lanes"
)
MD5_LANE_BLOCKS = Counter(
    "tus_staging_md5_lane_blocks_total",
    "64-byte blocks hashed in lockstep passes (divided by pass blocks: streams per pass)",
)
MD5_HELD_SECONDS = Counter(
    "tus_staging_md5_held_seconds_total",
    "time the md5 lanes engine waited for other uploads' blocks before starting a pass",
)

# The engine's own counters (store/md5_lanes.py) as last added to the ones above.
_md5_reported: dict[str, int] = {}


def record_md5_lanes() -> None:
    """Add what this process's md5 lanes engine did since the last call (called on the
    event loop after each PATCH body)."""
    now = md5_lanes.stats()
    for key, counter, unit in (
        ("updates", MD5_UPDATES.labels("lanes"), 1),
        ("inline_updates", MD5_UPDATES.labels("inline"), 1),
        ("pass_blocks", MD5_PASS_BLOCKS, 1),
        ("lane_blocks", MD5_LANE_BLOCKS, 1),
        ("held_ns", MD5_HELD_SECONDS, 1e-9),
    ):
        delta = now.get(key, 0) - _md5_reported.get(key, 0)
        if delta > 0:  # (a forked worker's engine starts from zero)
            counter.inc(delta * unit)
    _md5_reported.clear()
    _md5_reported.update(now)


def store_observers() -> StoreObservers:
    """The store's events, counted here."""
    return StoreObservers(
        lock_waited=LOCK_WAITS.inc,
        finalized=FINALIZE_SECONDS.observe,
        event=lambda kind: UPLOAD_EVENTS.labels(kind).inc(),
        blocks_written=record_md5_lanes,
        replica_wait=record_replica_wait,
    )


def record_replica_wait(seconds: float, acknowledged: bool) -> None:
    REPLICA_WAIT_SECONDS.observe(seconds)
    REPLICA_WAITS.labels("acknowledged" if acknowledged else "timed_out").inc()
