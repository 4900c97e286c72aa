"""DeliveryPolicy validation, jittered backoff and Retry-After parsing: pure, no I/O."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mtping.delivery import DeliveryPolicy
from mtping.delivery.policy import retry_after_seconds

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class EdgeRng(random.Random):
    """Jitter pinned to the top of its range, so the ceiling itself is observable."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize(
    "fields",
    [
        {"attempt_timeout": 0.0},
        {"attempt_timeout": -1.0},
        {"max_attempts": 0},
        {"backoff_initial": -0.1},
        {"backoff_initial": 2.0, "backoff_max": 1.0},
        {"per_origin_limit": 0},
        {"total_limit": 0},
    ],
)
def test_nonsense_policies_are_rejected(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        DeliveryPolicy(**fields)  # type: ignore[arg-type]


def test_no_timeout_is_allowed() -> None:
    assert DeliveryPolicy(attempt_timeout=None).attempt_timeout is None


@pytest.mark.parametrize(
    ("failed_attempts", "ceiling"),
    [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (8, 10.0), (10_000, 10.0)],
)
def test_backoff_ceiling_doubles_up_to_the_maximum(failed_attempts: int, ceiling: float) -> None:
    policy = DeliveryPolicy(backoff_initial=0.1, backoff_max=10.0)

    assert policy.backoff(failed_attempts, EdgeRng()) == pytest.approx(ceiling)


def test_backoff_is_full_jitter_and_reproducible_with_a_seeded_rng() -> None:
    policy = DeliveryPolicy(backoff_initial=1.0, backoff_max=1.0)

    first = [policy.backoff(1, random.Random(7)) for _ in range(3)]
    draws = [policy.backoff(1, rng) for rng in [random.Random(seed) for seed in range(200)]]

    assert first[0] == first[1] == first[2]
    assert all(0.0 <= draw <= 1.0 for draw in draws)
    assert min(draws) < 0.1
    assert max(draws) > 0.9


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("Sunday, 01-Mar-26 12:01:00 GMT", 60.0),
        ("Sun Mar  1 12:00:05 2026", 5.0),
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),  # already past
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("\u00b2", None),  # a unicode digit is not delay-seconds
    ],
)
def test_retry_after_parsing(header: str, seconds: float | None) -> None:
    assert retry_after_seconds(header, now=NOW) == seconds


def test_retry_after_date_is_measured_from_an_aware_now_in_any_zone() -> None:
    now_in_paris = NOW.astimezone(timezone(timedelta(hours=1)))

    assert retry_after_seconds("Sun, 01 Mar 2026 12:00:10 GMT", now=now_in_paris) == 10.0
