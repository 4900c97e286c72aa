"""Errors of the delivery layer: why one HTTP attempt to a sink failed, and whether to try again.

Each error knows whether it is `retriable`; the retry loop asks the error and keeps no table
of its own, so the whole retry classification lives in this file. Errors are raised `from`
the aiohttp or ssl exception that caused them, and aiohttp types never leave `delivery/`.
Their text is short and names no host or URL ("503 Service Unavailable", "timeout after
10s", "connection refused"), so it reads well in an Outcome and in a log line.
This module only describes errors; it never sends, sleeps or records metrics.
"""

from __future__ import annotations

from http import HTTPStatus

# 4xx statuses worth a retry. 404: the sink's pod may not be ready yet (Knative retries it
# too); 408 and 425: the server asks for the request again; 429: back-pressure, with backoff.
_RETRIABLE_CLIENT_STATUSES = frozenset({404, 408, 425, 429})
# 5xx statuses not worth a retry: 501 says the method will never be supported.
_PERMANENT_SERVER_STATUSES = frozenset({501})


class DeliveryError(Exception):
    """One attempt to deliver an event failed.

    `retriable`: another attempt may succeed. `status`: the HTTP status, if one arrived.
    `retry_after`: seconds the sink asked us to wait (Retry-After), if it said so.
    `outcome_class`: the label of the attempt in `mtping_delivery_attempts_total`.
    """

    retriable: bool = False
    status: int | None = None
    retry_after: float | None = None
    outcome_class: str = "connection"


class InvalidRequest(DeliveryError):
    """The request cannot be built (bad sink URL, bad header, bad CA PEM): never retriable."""


class SinkStatusError(DeliveryError):
    """The sink answered with a status other than 2xx."""

    def __init__(self, status: int, *, retry_after: float | None = None) -> None:
        super().__init__(_status_text(status))
        self.status = status
        self.retry_after = retry_after
        self.retriable = is_retriable_status(status)
        self.outcome_class = f"{status // 100}xx"


class SinkTimeout(DeliveryError):
    """The attempt did not complete within the per-attempt timeout."""

    retriable = True
    outcome_class = "timeout"

    def __init__(self, timeout: float | None) -> None:
        super().__init__(f"timeout after {timeout:g}s" if timeout is not None else "timeout")
        self.timeout = timeout


class SinkUnreachable(DeliveryError):
    """No response: connection refused or reset, DNS failure, server hung up."""

    retriable = True


class SinkTLSError(SinkUnreachable):
    """The TLS handshake failed, e.g. the certificate did not verify.

    Not retriable: a certificate that fails now fails the same way a second later, and
    retrying only delays the report of a misconfigured `CACerts`.
    """

    retriable = False


def is_retriable_status(status: int) -> bool:
    """Whether a non-2xx status is worth another attempt.

    Redirects (3xx) are not: we never follow them for a POST (the body would be re-sent to a
    place the user did not configure), and asking again yields the same redirect. Unlike
    Knative's pingsource adapter (CloudEvents sdk-go defaults) we retry 500 and 408 too: a
    500 from a sink is most often a transient crash, and a duplicate is cheaper than a loss.
    """
    if status in _RETRIABLE_CLIENT_STATUSES:
        return True
    return status >= 500 and status not in _PERMANENT_SERVER_STATUSES


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)
