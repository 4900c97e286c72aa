"""Concurrency slots of a Sender: one per origin, then one of the global pool, per attempt.

The per-origin slot is taken before the global one, so attempts to a sink that never answers
hold at most the per-origin limit of the global slots. When both are free (the common case)
`take_now` takes them synchronously: no coroutine, no timer. Otherwise `take` waits in FIFO
order for at most the given seconds. An origin's gate lives only while a send holds or waits
for it, so the table does not grow with every sink ever seen. No I/O, no metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Generic, TypeVar

Key = TypeVar("Key")


class Semaphore:
    """asyncio.Semaphore plus a synchronous `try_acquire`; FIFO, and a slot released while
    someone waits is handed to the first waiter directly, so no newcomer overtakes it."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # Handed a slot, but cancelled before using it: pass it on.
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class Gate:
    """The semaphore of one origin and how many sends hold or wait for it."""

    __slots__ = ("semaphore", "users")

    def __init__(self, limit: int) -> None:
        self.semaphore = Semaphore(limit)
        self.users = 0


class Slots(Generic[Key]):
    """Per-origin then global slots (see the module docstring)."""

    def __init__(self, *, per_origin: int, total: int) -> None:
        self._per_origin = per_origin
        self._total = Semaphore(total)
        self._gates: dict[Key, Gate] = {}

    def __len__(self) -> int:
        return len(self._gates)

    def take_now(self, origin: Key) -> Gate | None:
        """Both slots if both are free right now, else None (and nothing taken)."""
        gate = self._gate(origin)
        if gate.semaphore.try_acquire():
            if self._total.try_acquire():
                gate.users += 1
                return gate
            gate.semaphore.release()
        if gate.users == 0:
            del self._gates[origin]
        return None

    async def take(self, origin: Key, *, within: float) -> Gate:
        """Both slots, waiting at most `within` seconds (TimeoutError)."""
        gate = self._gate(origin)
        gate.users += 1
        try:
            async with asyncio.timeout(within):
                await gate.semaphore.acquire()
                try:
                    await self._total.acquire()
                except BaseException:
                    gate.semaphore.release()
                    raise
        except BaseException:
            self._leave(origin, gate)
            raise
        return gate

    def release(self, origin: Key, gate: Gate) -> None:
        self._total.release()
        gate.semaphore.release()
        self._leave(origin, gate)

    def _gate(self, origin: Key) -> Gate:
        gate = self._gates.get(origin)
        if gate is None:
            gate = self._gates[origin] = Gate(self._per_origin)
        return gate

    def _leave(self, origin: Key, gate: Gate) -> None:
        gate.users -= 1
        if gate.users == 0:
            del self._gates[origin]
