"""Errors of the apiserver layer.

Every failure talking to the apiserver leaves `kube/` as one of these, chained from the
library's exception, so aiohttp and kubernetes_asyncio types never reach the layers above.
"""

from __future__ import annotations


class KubeError(Exception):
    """A request to the apiserver failed."""


class ApiUnavailable(KubeError):
    """The apiserver could not be reached, or the connection broke mid-stream."""


class ApiStatusError(KubeError):
    """The apiserver answered with a failure status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class WatchExpired(KubeError):
    """410 Gone: the resourceVersion we hold is too old; list again."""
