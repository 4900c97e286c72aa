"""A tiny synchronous REST client for the harness's own calls to the apiserver.

Its job: let the (synchronous) control-plane harness probe health, apply manifests and mint
tokens with nothing but the standard library, so fixtures need neither kubectl nor an event
loop. It must never be used by mtping itself nor stand in for kubernetes_asyncio in tests
that are about client behaviour.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JSON = "application/json"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


class ApiError(RuntimeError):
    """The apiserver answered with an HTTP error status."""

    def __init__(self, *, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        self.body = body
        self.details = _parse_status(body)
        self.reason = str(self.details.get("reason", ""))
        super().__init__(f"{method} {path} -> {status} {self.reason}: {self.message}")

    @property
    def message(self) -> str:
        return str(self.details.get("message", self.body[:500]))


def _parse_status(body: str) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


@dataclass(frozen=True, slots=True)
class Credentials:
    """How to reach and authenticate to one apiserver: client cert or bearer token."""

    server: str
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    token: str | None = None


class RestClient:
    """JSON over HTTPS to one apiserver; raises ApiError for 4xx/5xx answers."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._tls = ssl.create_default_context(cafile=str(credentials.ca_file))
        if credentials.cert_file is not None:
            self._tls.load_cert_chain(str(credentials.cert_file), str(credentials.key_file))
        # No proxy: the apiserver is on loopback, whatever $https_proxy says.
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self._tls)
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        content_type: str = JSON,
        timeout: float = 15.0,
        accept: str = JSON,
    ) -> dict[str, Any]:
        """Send one request; the decoded JSON answer (empty dict for an empty body; a body
        that is not a JSON object comes as {"text": ...}, e.g. /metrics)."""
        request = self._build(method, path, body=body, content_type=content_type, accept=accept)
        try:
            with self._opener.open(request, timeout=timeout) as answer:
                raw = answer.read().decode()
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            raise ApiError(method=method, path=path, status=error.code, body=text) from error
        decoded = json.loads(raw) if raw.strip().startswith("{") else {"text": raw}
        return decoded if isinstance(decoded, dict) else {"items": decoded}

    def get(self, path: str) -> dict[str, Any]:
        return self.request("GET", path)

    def reachable(self, path: str) -> bool:
        """Whether GET `path` answers 2xx right now (connection failures count as no)."""
        try:
            self.request("GET", path, timeout=2.0)
        except (ApiError, OSError):
            return False
        return True

    def _build(
        self, method: str, path: str, *, body: object, content_type: str, accept: str
    ) -> urllib.request.Request:
        headers = {"Accept": accept}
        if self.credentials.token is not None:
            headers["Authorization"] = f"Bearer {self.credentials.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        url = self.credentials.server + path
        return urllib.request.Request(url, data=data, method=method, headers=headers)
