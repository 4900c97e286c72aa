"""The admission webhook's HTTPS server: `POST /validate` answers AdmissionReviews.

It serves on its own port with the certificate it is given, and switches to a new one without
a restart: `load_cert_chain` on the live SSLContext applies to every handshake after it, while
open connections finish on the old one. The decision itself is `mtping.admission.review`;
where certificates come from (a Secret) and how the apiserver learns to trust them (the
webhook configuration's caBundle) is `mtping.kube.webhook`'s job, not this module's.
"""

from __future__ import annotations

import json
import logging
import ssl
import tempfile
from pathlib import Path

from aiohttp import web

from mtping.admission import Parse, review
from mtping.certs import ServingBundle

log = logging.getLogger(__name__)

PATH = "/validate"
# An object may be ~1.5 MiB (etcd's request limit); an UPDATE carries it twice, as JSON.
MAX_REVIEW_BYTES = 4 * 1024 * 1024


class WebhookServer:
    """HTTPS on `host:port`, started by the first `serve(bundle)`; later calls swap the cert."""

    def __init__(self, *, parse: Parse, host: str, port: int) -> None:
        self._parse = parse
        self._host = host
        self._port = port
        self._context = _server_context()
        self._serving: ServingBundle | None = None
        self._runner: web.AppRunner | None = None

    @property
    def serving(self) -> ServingBundle | None:
        """The bundle handshakes use now; None before the first `serve`."""
        return self._serving

    @property
    def port(self) -> int:
        """The port listened on (the kernel's pick when constructed with 0); 0 before `serve`."""
        if self._runner is None or not self._runner.addresses:
            return 0
        return int(self._runner.addresses[0][1])

    async def serve(self, bundle: ServingBundle) -> None:
        if bundle == self._serving:
            return
        load_chain(self._context, bundle)
        self._serving = bundle
        if self._runner is None:
            self._runner = await self._start()
            log.info("admission webhook serving on https://%s:%d%s", self._host, self._port, PATH)
        else:
            log.info("admission webhook now serves a new certificate")

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _start(self) -> web.AppRunner:
        app = web.Application(client_max_size=MAX_REVIEW_BYTES)
        app.router.add_post(PATH, self._validate)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port, ssl_context=self._context).start()
        except BaseException:
            await runner.cleanup()
            raise
        return runner

    async def _validate(self, request: web.Request) -> web.Response:
        try:
            answer = review(await request.json(loads=json.loads), parse=self._parse)
        except ValueError as error:  # bad JSON, or a MalformedReview
            return web.Response(status=400, text=f"not an AdmissionReview v1 request: {error}\n")
        response = answer["response"]
        if not response["allowed"]:
            log.info("refused a PingSource: %s", response["status"]["message"].replace("\n", "; "))
        return web.json_response(answer)


def _server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def load_chain(context: ssl.SSLContext, bundle: ServingBundle) -> None:
    """Install `bundle`'s certificate and key (OpenSSL reads them from files only)."""
    with tempfile.TemporaryDirectory(prefix="mtping-tls-") as folder:  # mode 0700
        cert, key = Path(folder, "tls.crt"), Path(folder, "tls.key")
        cert.write_bytes(bundle.cert_pem)
        key.write_bytes(bundle.key_pem)
        context.load_cert_chain(cert, key)
