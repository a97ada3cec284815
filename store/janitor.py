"""The janitor's pass: expired uploads, interrupted finalizes, stale reservations.

One pass runs at a time across every worker and host (a lease in Redis). Every entry is
handled on its own: one that fails (a finalize blocked by something in the way, a disk
error) is logged and the pass goes on to the next.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from protocol.errors import TusError

from .uploads import Uploads

log = logging.getLogger("tus_staging.janitor")

BATCH = 10_000  # entries of each index looked at in one pass


@dataclass
class JanitorReport:
    expired: int = 0  # unfinished uploads removed
    finalized: int = 0  # interrupted finalizes completed
    failed: int = 0  # entries that could not be handled this time (logged)
    pruned: int = 0  # reservations of uploads that no longer exist


async def janitor_pass(uploads: Uploads, *, min_finalize_age: float) -> JanitorReport | None:
    """One pass, unless another one is running somewhere (then None)."""
    async with uploads.janitor_lease() as held:
        if not held:
            return None
        report = JanitorReport()
        now = uploads.clock()
        for upload_id in await uploads.records.expired_ids(now, BATCH):
            try:
                if await uploads.expire(upload_id):
                    report.expired += 1
                    log.info("removed expired upload %s", upload_id)
            except Exception:
                report.failed += 1
                log.exception("could not remove expired upload %s", upload_id)
        for upload_id in await uploads.records.finalizing_ids(now - min_finalize_age, BATCH):
            try:
                if await uploads.complete_finalize(upload_id):
                    report.finalized += 1
                    log.info("completed interrupted finalize of upload %s", upload_id)
            except TusError as error:
                report.failed += 1
                log.warning("finalize of upload %s still blocked: %s", upload_id, error.reason)
            except Exception:
                report.failed += 1
                log.exception("could not complete the finalize of upload %s", upload_id)
        report.pruned = await uploads.quotas.prune(uploads.records.exists)
        return report
