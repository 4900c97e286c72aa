"""Pausing Python's cyclic garbage collector while big bursts of allocation run.

Two things allocate by the hundred thousand in mtping: a list of PingSources (every field of
every object) and a tick's burst (a job per source). Neither makes reference cycles worth
collecting, yet each triggers collections that rescan what it allocated, again and again:
decoding and applying 100k PingSources took 3.98 s with the collector and 1.93 s without; a
100k burst spent 186 ms in collections (bench/README.md). Acyclic garbage is freed by reference
counting whether the collector runs or not.

Pauses may overlap (a tick may fire while a relist runs): the collector runs again when the
last one ends. A pause never outlives its caller's bound, so garbage cycles made meanwhile
(a failed send's traceback, say) wait seconds, not forever. Touches nothing but `gc`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_holders = 0
_was_enabled = True


def hold() -> None:
    """Pause the collector until a matching `release`."""
    global _holders, _was_enabled
    if _holders == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _holders += 1


def release() -> None:
    """End one `hold`; the last one restores the collector as it was before the first."""
    global _holders
    if _holders == 0:
        raise RuntimeError("gcpause.release() without a hold()")
    _holders -= 1
    if _holders == 0 and _was_enabled:
        gc.enable()


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection inside the block (nests with other pauses)."""
    hold()
    try:
        yield
    finally:
        release()
