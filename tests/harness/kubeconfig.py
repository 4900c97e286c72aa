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


def read_kubeconfig(path: Path, *, scratch_dir: Path) -> Credentials:
    """Credentials of the current context of a kubeconfig with embedded (base64) data.

    TLS needs files, so embedded certificates and keys are written to `scratch_dir` (0600).
    """
    document = yaml.safe_load(path.read_text())
    context = _named(document["contexts"], document["current-context"])["context"]
    cluster = _named(document["clusters"], context["cluster"])["cluster"]
    user = _named(document["users"], context["user"])["user"]
    scratch_dir.mkdir(parents=True, exist_ok=True)
    files = {key: _unembed(scratch_dir / key, user[key]) for key in _CLIENT_DATA if key in user}
    return Credentials(
        server=cluster["server"],
        ca_file=_unembed(scratch_dir / "ca", cluster["certificate-authority-data"]),
        cert_file=files.get("client-certificate-data"),
        key_file=files.get("client-key-data"),
        token=user.get("token"),
    )


_CLIENT_DATA = ("client-certificate-data", "client-key-data")


def _named(entries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(entry for entry in entries if entry["name"] == name)


def _unembed(path: Path, data: str) -> Path:
    path.write_bytes(base64.b64decode(data))
    path.chmod(0o600)
    return path
