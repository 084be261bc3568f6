"""One writer per lake: the guard every flow that writes serving state runs inside.

Two layers. With ``prefect_concurrency_limit`` set (deployments: ``qonline-lake-writer``, created
with limit 1), the run first takes a slot of that Prefect global concurrency limit, so the Prefect
UI shows who waits for whom. Then, always, it takes the lake's own writer lease
(:mod:`quant_core.data.lease`), which needs no Prefect server and also covers CLI runs, other Prefect
servers and other hosts. The lake's per-dataset compare-and-swap stays the last line: even a
writer outside both guards cannot make a commit lose another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from quant_core.data.lake import Lake
from quant_core.data.lease import LakeLease, LeaseBusy
from quant_core.settings import Settings


@contextmanager
def lake_writer(settings: Settings, what: str) -> Iterator[LakeLease]:
    """Hold the lake for ``what``; wait up to ``lake_lock_wait_seconds``, then refuse with :class:`LeaseBusy`."""
    wait = settings.lake_lock_wait_seconds
    with ExitStack() as stack:
        if settings.prefect_concurrency_limit:
            from prefect.concurrency.sync import concurrency

            try:
                stack.enter_context(concurrency(settings.prefect_concurrency_limit, occupy=1,
                                                timeout_seconds=max(wait, 1.0), strict=False))
            except TimeoutError as exc:
                raise LeaseBusy(f"Prefect concurrency limit {settings.prefect_concurrency_limit!r} stayed full for "
                                f"{max(wait, 1.0):.0f} s: another run writes the lake (see the limit's active slots "
                                f"in the Prefect UI); {what} did not start") from exc
        lease = stack.enter_context(LakeLease(Lake.from_settings(settings), what, wait=wait))
        yield lease
