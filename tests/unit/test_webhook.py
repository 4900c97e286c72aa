"""The webhook's HTTPS server on loopback: reviews answered, certificates swapped live."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from mtping.certs import ServingBundle, issue, serving_names
from mtping.lifecycle import source_parser
from mtping.settings import Settings
from mtping.webhook import WebhookServer

NAMES = serving_names(service="mtping-webhook", namespace="knative-eventing", url_host="127.0.0.1")


def review_of(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "r-1",
            "kind": {"group": "sources.knative.dev", "version": "v1", "kind": "PingSource"},
            "operation": "CREATE",
            "namespace": "team-a",
            "name": "ping",
            "object": {"metadata": {"name": "ping", "namespace": "team-a"}, "spec": spec},
        },
    }


@pytest.fixture
async def server() -> AsyncIterator[WebhookServer]:
    webhook = WebhookServer(parse=source_parser(Settings()), host="127.0.0.1", port=0)
    yield webhook
    await webhook.close()


def trusting(bundle: ServingBundle) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=bundle.ca_pem.decode())


async def post(server: WebhookServer, bundle: ServingBundle, body: bytes) -> tuple[int, str]:
    url = f"https://127.0.0.1:{server.port}/validate"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, ssl=trusting(bundle)) as answer,
    ):
        return answer.status, await answer.text()


async def served_certificate(server: WebhookServer, bundle: ServingBundle) -> bytes:
    """The DER certificate a new connection is handshaken with (verified against `bundle`)."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=trusting(bundle), server_hostname="127.0.0.1"
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return bytes(ssl_object.getpeercert(binary_form=True))
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_bad_pingsource_is_denied_over_https(server: WebhookServer) -> None:
    bundle = issue(NAMES, now=datetime.now(UTC))
    await server.serve(bundle)

    status, text = await post(server, bundle, json.dumps(review_of({"sink": {}})).encode())

    assert status == 200
    response = json.loads(text)["response"]
    assert (response["uid"], response["allowed"]) == ("r-1", False)
    assert response["status"]["message"] == "spec.sink: must set ref or uri"


async def test_a_good_pingsource_is_allowed(server: WebhookServer) -> None:
    bundle = issue(NAMES, now=datetime.now(UTC))
    await server.serve(bundle)
    body = json.dumps(review_of({"sink": {"uri": "http://sink.example/"}})).encode()

    status, text = await post(server, bundle, body)

    assert (status, json.loads(text)["response"]["allowed"]) == (200, True)


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"apiVersion": "v1"}'])
async def test_what_is_not_an_admission_review_gets_400(server: WebhookServer, body: bytes) -> None:
    bundle = issue(NAMES, now=datetime.now(UTC))
    await server.serve(bundle)

    status, text = await post(server, bundle, body)

    assert status == 400
    assert text.startswith("not an AdmissionReview v1 request")


async def test_a_new_certificate_is_used_by_new_connections_without_restart(
    server: WebhookServer,
) -> None:
    first = issue(NAMES, now=datetime.now(UTC))
    await server.serve(first)
    port = server.port
    before = await served_certificate(server, first)

    second = issue(NAMES, now=datetime.now(UTC), previous=first)
    await server.serve(second)

    assert server.port == port
    after = await served_certificate(server, second)
    assert before != after
    assert after == ssl.PEM_cert_to_DER_cert(second.cert_pem.decode())
    assert server.serving == second
    with pytest.raises(ssl.SSLCertVerificationError):
        await served_certificate(server, first)  # the old CA alone no longer verifies it
