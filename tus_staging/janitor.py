"""The janitor's schedule: every worker runs the loop, the store's lease lets one pass run
at a time across all workers and hosts (store/janitor.py); ``tus-staging cleanup`` runs
one pass by hand."""

from __future__ import annotations

import asyncio
import logging
import secrets

from store.cancellation import stop_if_cancelled
from store.janitor import janitor_pass
from store.uploads import Uploads

log = logging.getLogger("tus_staging.janitor")


async def janitor_loop(uploads: Uploads, interval: float, min_finalize_age: float) -> None:
    # Start at a random point so that workers started together do not all knock at once.
    await asyncio.sleep(interval * (0.5 + secrets.randbelow(1000) / 1000))
    while True:
        try:
            await janitor_pass(uploads, min_finalize_age=min_finalize_age)
        except Exception:  # Redis away, say: the next pass tries again
            log.exception("janitor pass failed")
        stop_if_cancelled()
        await asyncio.sleep(interval)
