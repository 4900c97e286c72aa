"""Kubeconfig files for the harness's cluster: admin (client cert) or a ServiceAccount (token).

Its job: write self-contained kubeconfigs (certificates embedded as base64) that kubectl,
kubernetes_asyncio and client-go all accept. It must never write anywhere but the path given.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from tests.harness.rest import Credentials

CONTEXT = "mtping-harness"


def write_kubeconfig(path: Path, credentials: Credentials) -> Path:
    """Write a kubeconfig for `credentials` to `path` (mode 0600) and return `path`."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": _cluster(credentials)}],
        "users": [{"name": CONTEXT, "user": _user(credentials)}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT}}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o600)
    return path


def _cluster(credentials: Credentials) -> dict[str, Any]:
    return {
        "server": credentials.server,
        "certificate-authority-data": _embed(credentials.ca_file),
    }


def _user(credentials: Credentials) -> dict[str, Any]:
    if credentials.token is not None:
        return {"token": credentials.token}
    if credentials.cert_file is None or credentials.key_file is None:
        raise ValueError("credentials need either a token or a client cert and key")
    return {
        "client-certificate-data": _embed(credentials.cert_file),
        "client-key-data": _embed(credentials.key_file),
    }


def _embed(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
