"""Retry classification and the short texts of delivery errors: pure, no I/O."""

from __future__ import annotations

import pytest

from mtping.delivery import (
    DeliveryError,
    InvalidRequest,
    SinkStatusError,
    SinkTimeout,
    SinkTLSError,
    SinkUnreachable,
)
from mtping.delivery.errors import is_retriable_status


@pytest.mark.parametrize(
    ("status", "retriable"),
    [
        (301, False),
        (302, False),
        (307, False),
        (308, False),
        (400, False),
        (401, False),
        (403, False),
        (404, True),
        (408, True),
        (409, False),
        (410, False),
        (413, False),
        (422, False),
        (425, True),
        (429, True),
        (500, True),
        (501, False),
        (502, True),
        (503, True),
        (504, True),
        (505, True),
        (599, True),
    ],
)
def test_status_retriability(status: int, retriable: bool) -> None:
    assert is_retriable_status(status) is retriable
    assert SinkStatusError(status).retriable is retriable


@pytest.mark.parametrize(
    ("error", "text", "outcome_class", "retriable"),
    [
        (SinkStatusError(503), "503 Service Unavailable", "5xx", True),
        (SinkStatusError(429, retry_after=2.0), "429 Too Many Requests", "4xx", True),
        (SinkStatusError(302), "302 Found", "3xx", False),
        (SinkStatusError(599), "599", "5xx", True),
        (SinkTimeout(10.0), "timeout after 10s", "timeout", True),
        (SinkTimeout(0.25), "timeout after 0.25s", "timeout", True),
        (SinkTimeout(None), "timeout", "timeout", True),
        (SinkUnreachable("connection refused"), "connection refused", "connection", True),
        (SinkTLSError("TLS handshake failed"), "TLS handshake failed", "connection", False),
        (InvalidRequest("invalid sink URL"), "invalid sink URL", "connection", False),
    ],
)
def test_error_text_class_and_retriability(
    error: DeliveryError, text: str, outcome_class: str, retriable: bool
) -> None:
    assert (str(error), error.outcome_class, error.retriable) == (text, outcome_class, retriable)


def test_status_error_carries_status_and_retry_after() -> None:
    error = SinkStatusError(503, retry_after=1.5)

    assert (error.status, error.retry_after) == (503, 1.5)
    assert SinkTimeout(1.0).status is None
    assert SinkTimeout(1.0).retry_after is None
