"""How hard to try: the delivery policy value and the pure arithmetic of waiting between tries.

Everything here is pure: no I/O, no clock (the caller passes `now`), no randomness of its own
(the caller passes the `random.Random`). The retry loop in `sending.py` uses it; which
failures are retriable is the errors' business (`errors.py`), not the policy's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

HTTP_CLIENTS = ("lean", "aiohttp")
"""`lean`: prepared bytes over pooled asyncio connections, aiohttp only for what it does not
cover; `aiohttp`: aiohttp for everything (the fallback, kept selectable)."""

# Exponent cap for the backoff: 2**62 times any sane initial delay is far above any maximum,
# and keeps the float arithmetic from overflowing on absurd attempt counts.
_MAX_EXPONENT = 62


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Limits of one Sender, and its HTTP client.

    `attempt_timeout`: seconds for one HTTP attempt (Knative's K_SINK_TIMEOUT); None means no
    timeout (Knative's -1). `max_attempts`: tries per event, the first included. Backoff is
    exponential from `backoff_initial` up to `backoff_max`, with full jitter. `per_origin_limit`:
    concurrent attempts to one sink origin (scheme, host, port); `total_limit`: concurrent
    attempts in all. Attempts to an origin that never answers can hold at most
    `per_origin_limit` of the `total_limit` slots, so other sinks keep flowing.
    `http_client`: one of HTTP_CLIENTS.
    """

    attempt_timeout: float | None = 10.0
    max_attempts: int = 6
    backoff_initial: float = 0.1
    backoff_max: float = 10.0
    per_origin_limit: int = 64
    total_limit: int = 1024
    http_client: str = "lean"

    def __post_init__(self) -> None:
        if self.attempt_timeout is not None and self.attempt_timeout <= 0:
            raise ValueError("attempt_timeout must be positive or None")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.backoff_initial <= self.backoff_max:
            raise ValueError("backoff must satisfy 0 <= backoff_initial <= backoff_max")
        if self.per_origin_limit < 1 or self.total_limit < 1:
            raise ValueError("per_origin_limit and total_limit must be at least 1")
        if self.http_client not in HTTP_CLIENTS:
            raise ValueError(f"http_client must be one of {', '.join(HTTP_CLIENTS)}")

    def backoff(self, failed_attempts: int, rng: random.Random) -> float:
        """Seconds to wait after the `failed_attempts`-th failure: uniform in [0, ceiling].

        The ceiling doubles with each failure from `backoff_initial` up to `backoff_max`. Full
        jitter spreads the retries of many sources that failed on the same tick.
        """
        exponent = min(max(failed_attempts - 1, 0), _MAX_EXPONENT)
        ceiling = min(self.backoff_max, self.backoff_initial * 2.0**exponent)
        return rng.uniform(0.0, ceiling)


def retry_after_seconds(value: str, *, now: datetime) -> float | None:
    """Parse a Retry-After header (delay-seconds or HTTP-date) into seconds from `now`.

    Returns None for a value that is neither; a date in the past gives 0. `now` must be
    timezone-aware (HTTP-dates are in GMT).
    """
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP-dates are GMT by definition.
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)
