"""One computation for many waiters: callers that ask for the same key while it is being
computed await the one run already under way instead of starting their own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


async def shared(
    in_flight: dict[K, asyncio.Future[T]], key: K, make: Callable[[], Coroutine[Any, Any, T]]
) -> T:
    """The result of ``make()`` for ``key``, run once for all callers that ask meanwhile.

    ``in_flight`` holds the runs under way (the caller's own dict, one per kind of work);
    a run leaves it when done, so the next ask after that starts afresh. A caller that is
    cancelled stops waiting without cancelling the run the others wait for.
    """
    pending = in_flight.get(key)
    if pending is None:
        pending = asyncio.ensure_future(make())
        in_flight[key] = pending
        pending.add_done_callback(lambda _: in_flight.pop(key, None))
    return await asyncio.shield(pending)
