"""Keeps the admission webhook trusted: its certificate in a Secret, its CA in the caBundle.

One `reconcile` at start and every `check_interval`:
1. the Secret (`mtping-webhook-certs` in the system namespace) must hold a certificate that
   covers the webhook's names and is outside the renewal window; otherwise a new CA and
   certificate are issued (`mtping.certs`) and server-side applied with the read
   resourceVersion as a precondition, so of two replicas rotating at once one wins and the
   other adopts its Secret (409, read again);
2. the ValidatingWebhookConfiguration must trust the Secret's CA list and carry the
   configured failurePolicy:
   - Service shape (the default): config/webhook.yaml ships it; mtping only patches caBundle
     and failurePolicy of its webhooks (a JSON patch guarded by resourceVersion) and never
     creates it, so deleting it turns the webhook off;
   - URL shape (`--webhook-url`, where no Service routes to mtping): mtping owns the whole
     configuration and server-side applies it;
3. the server switches to the Secret's certificate, after step 2, so the apiserver already
   trusts the new CA when the first handshake uses it.
Secrets and the configuration are only ever written by server-side apply or patch on their one
name, so RBAC can restrict every verb, `create` included, with resourceNames.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from kubernetes_asyncio.client import AdmissionregistrationV1Api, ApiClient, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from mtping.certs import CertPolicy, ServingBundle, ServingNames, issue, renewal_reason
from mtping.certs import serving_names as names_for
from mtping.kube.errors import ApiStatusError, ApiUnavailable, KubeError
from mtping.kube.watching import Backoff
from mtping.settings import WebhookSettings
from mtping.webhook import WebhookServer

log = logging.getLogger(__name__)

FIELD_MANAGER = "mtping"
APPLY_PATCH = "application/apply-patch+yaml"
LABELS = {"app.kubernetes.io/name": "mtping", "app.kubernetes.io/component": "webhook"}
CA_KEY, CERT_KEY, KEY_KEY = "ca.crt", "tls.crt", "tls.key"
RULES = [
    {
        "apiGroups": ["sources.knative.dev"],
        "apiVersions": ["v1", "v1beta2", "v1beta1"],
        "resources": ["pingsources"],
        "operations": ["CREATE", "UPDATE"],
        "scope": "Namespaced",
    }
]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def serving_names(settings: WebhookSettings, namespace: str) -> ServingNames:
    host = urlsplit(settings.url).hostname if settings.url else None
    return names_for(service=settings.service, namespace=namespace, url_host=host)


def webhook_entry(settings: WebhookSettings) -> dict[str, Any]:
    """The webhook's definition, clientConfig aside: config/webhook.yaml must match it."""
    return {
        "name": settings.configuration,
        "rules": RULES,
        "failurePolicy": settings.failure_policy.value,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": settings.timeout_seconds,
        "matchPolicy": "Equivalent",
    }


def url_configuration(settings: WebhookSettings, ca_pem: bytes) -> dict[str, Any]:
    """The whole ValidatingWebhookConfiguration mtping applies in the URL shape."""
    client_config = {"url": settings.url, "caBundle": _b64(ca_pem)}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": settings.configuration, "labels": LABELS},
        "webhooks": [{**webhook_entry(settings), "clientConfig": client_config}],
    }


def trust_patch(configuration: Mapping[str, Any], *, ca_pem: bytes, policy: str) -> list[Any]:
    """JSON patch setting caBundle and failurePolicy on every webhook of `configuration`;
    empty when nothing differs. Its first op pins the resourceVersion that was read."""
    ca_bundle = _b64(ca_pem)
    ops: list[dict[str, Any]] = []
    for index, hook in enumerate(configuration.get("webhooks") or []):
        if (hook.get("clientConfig") or {}).get("caBundle") != ca_bundle:
            ops.append(_add(f"/webhooks/{index}/clientConfig/caBundle", ca_bundle))
        if hook.get("failurePolicy") != policy:
            ops.append(_add(f"/webhooks/{index}/failurePolicy", policy))
    if not ops:
        return []
    version = configuration["metadata"]["resourceVersion"]
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": version}, *ops]


def bundle_from_secret(data: Mapping[str, str] | None) -> ServingBundle:
    """The Secret's `data` (base64 values) as a bundle; missing keys read as empty."""
    values = data or {}
    return ServingBundle(
        ca_pem=_unb64(values.get(CA_KEY)),
        cert_pem=_unb64(values.get(CERT_KEY)),
        key_pem=_unb64(values.get(KEY_KEY)),
    )


class CertificateSecret:
    """The Secret holding the webhook's bundle: read, judged, renewed."""

    def __init__(
        self,
        api: ApiClient,
        *,
        name: str,
        namespace: str,
        names: ServingNames,
        policy: CertPolicy,
        clock: Clock,
        request_timeout: float,
    ) -> None:
        self._core = CoreV1Api(api)
        self._name = name
        self._namespace = namespace
        self._names = names
        self._policy = policy
        self._clock = clock
        self._timeout = request_timeout

    async def ensure(self) -> ServingBundle:
        """A good bundle from the Secret, renewing it first when it must be."""
        try:
            return await self._ensure()
        except KubeError as error:
            raise KubeError(f"Secret {self._namespace}/{self._name}: {error}") from error

    async def _ensure(self) -> ServingBundle:
        for _ in range(3):
            stored, version = await self._read()
            reason = "no Secret yet" if stored is None else self._reason(stored)
            if reason is None and stored is not None:
                return stored
            renewed = issue(self._names, now=self._clock(), policy=self._policy, previous=stored)
            if await self._write(renewed, version):
                log.info("new webhook certificate in Secret %s: %s", self._name, reason)
                return renewed
        raise KubeError("it keeps changing under us")

    def _reason(self, bundle: ServingBundle) -> str | None:
        return renewal_reason(bundle, self._names, now=self._clock(), policy=self._policy)

    async def _read(self) -> tuple[ServingBundle | None, str | None]:
        try:
            secret = await _call(
                lambda: self._core.read_namespaced_secret(
                    self._name, self._namespace, _request_timeout=self._timeout
                )
            )
        except ApiStatusError as error:
            if error.status == 404:
                return None, None
            raise
        return bundle_from_secret(secret.data), secret.metadata.resource_version

    async def _write(self, bundle: ServingBundle, version: str | None) -> bool:
        """Apply `bundle`; False when the Secret changed since `version` was read."""
        metadata: dict[str, Any] = {"name": self._name, "namespace": self._namespace}
        metadata |= {"labels": LABELS} | ({"resourceVersion": version} if version else {})
        # A Secret's type is immutable: set it on creation only, so one made beforehand by an
        # installer (Knative's are Opaque) is filled in rather than refused.
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            **({} if version else {"type": "kubernetes.io/tls"}),
            "data": {
                CA_KEY: _b64(bundle.ca_pem),
                CERT_KEY: _b64(bundle.cert_pem),
                KEY_KEY: _b64(bundle.key_pem),
            },
        }
        try:
            await _call(lambda: self._apply(body))
        except ApiStatusError as error:
            if error.status == 409:  # another replica renewed first: adopt its bundle
                return False
            raise
        return True

    async def _apply(self, body: dict[str, Any]) -> None:
        core: Any = self._core  # its stubs omit _content_type, which it honours
        await core.patch_namespaced_secret(
            self._name,
            self._namespace,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
            _request_timeout=self._timeout,
        )


class WebhookConfiguration:
    """The ValidatingWebhookConfiguration: made to trust a CA list (see the module docstring)."""

    def __init__(self, api: ApiClient, *, settings: WebhookSettings, request_timeout: float):
        self._api = api
        self._admission = AdmissionregistrationV1Api(api)
        self._settings = settings
        self._name = f"ValidatingWebhookConfiguration {settings.configuration}"
        self._timeout = request_timeout
        self._applied = b""

    async def trust(self, ca_pem: bytes) -> None:
        if not self._settings.url:
            await self._patch_service_shape(ca_pem)
            return
        await _call(lambda: self._apply(url_configuration(self._settings, ca_pem)))
        if ca_pem != self._applied:
            self._applied = ca_pem
            log.info("%s calls %s and trusts the current CA", self._name, self._settings.url)

    async def _patch_service_shape(self, ca_pem: bytes) -> None:
        name = self._settings.configuration
        try:
            current = await _call(lambda: self._read(name))
        except ApiStatusError as error:
            if error.status == 404:
                raise KubeError(f"{self._name} not found: apply config/webhook.yaml") from error
            raise
        patch = trust_patch(current, ca_pem=ca_pem, policy=self._settings.failure_policy.value)
        if patch:
            await _call(
                lambda: self._admission.patch_validating_webhook_configuration(
                    name, patch, _request_timeout=self._timeout
                )
            )
            log.info("%s now trusts the current CA", self._name)

    async def _read(self, name: str) -> dict[str, Any]:
        current = await self._admission.read_validating_webhook_configuration(
            name, _request_timeout=self._timeout
        )
        body: dict[str, Any] = self._api.sanitize_for_serialization(current)  # JSON field names
        return body

    async def _apply(self, body: dict[str, Any]) -> None:
        admission: Any = self._admission  # its stubs omit _content_type, which it honours
        await admission.patch_validating_webhook_configuration(
            self._settings.configuration,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
            _request_timeout=self._timeout,
        )


class BundleSource(Protocol):
    async def ensure(self) -> ServingBundle: ...


class TrustTarget(Protocol):
    async def trust(self, ca_pem: bytes) -> None: ...


class Server(Protocol):
    @property
    def serving(self) -> ServingBundle | None: ...

    async def serve(self, bundle: ServingBundle) -> None: ...


class WebhookReconciler:
    """Secret, then configuration, then server; at start and every `check_interval`."""

    def __init__(
        self,
        *,
        secret: BundleSource,
        configuration: TrustTarget,
        server: Server,
        check_interval: float,
    ) -> None:
        self._secret = secret
        self._configuration = configuration
        self._server = server
        self._check_interval = check_interval
        self.attempted = asyncio.Event()
        """Set after the first reconcile, whether it worked or not."""

    async def reconcile(self) -> None:
        bundle = await self._secret.ensure()
        try:
            await self._configuration.trust(bundle.ca_pem)
        except KubeError:
            # Nothing served yet: serving unverifiable beats not listening. Else keep the old
            # certificate, which the apiserver still trusts, until the caBundle is updated.
            if self._server.serving is None:
                await self._server.serve(bundle)
            raise
        await self._server.serve(bundle)

    async def run(self) -> None:
        backoff = Backoff(1.0, 60.0)
        while True:
            try:
                await self.reconcile()
            except KubeError as error:
                delay = backoff.next_delay()
                log.warning("admission webhook: %s; retrying in %.1fs", error, delay)
            else:
                backoff.reset()
                delay = self._check_interval
            self.attempted.set()
            await asyncio.sleep(delay)


async def start_webhook(
    api: ApiClient,
    *,
    settings: WebhookSettings,
    namespace: str,
    server: WebhookServer,
    wait: float,
    request_timeout: float = 10.0,
) -> asyncio.Task[None]:
    """Start reconciling forever; return once the first round was tried, or after `wait` s."""
    secret = CertificateSecret(
        api,
        name=settings.secret,
        namespace=namespace,
        names=serving_names(settings, namespace),
        policy=CertPolicy(),
        clock=utc_now,
        request_timeout=request_timeout,
    )
    reconciler = WebhookReconciler(
        secret=secret,
        configuration=WebhookConfiguration(api, settings=settings, request_timeout=request_timeout),
        server=server,
        check_interval=settings.check_interval,
    )
    task = asyncio.create_task(reconciler.run(), name="webhook")
    attempted = asyncio.create_task(reconciler.attempted.wait())
    await asyncio.wait([task, attempted], timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    attempted.cancel()
    return task


async def _call(request: Callable[[], Awaitable[Any]]) -> Any:
    """Run one apiserver request, turning library errors into kube/ errors."""
    try:
        return await request()
    except ApiException as error:
        raise ApiStatusError(error.status, _message(error)) from error
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise ApiUnavailable(f"apiserver unreachable: {error!r}") from error


def _message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "").get("message") or error.reason)
    except (TypeError, ValueError, AttributeError):
        return str(error.reason)


def _add(path: str, value: str) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    try:
        return base64.b64decode(text or "", validate=True)
    except ValueError:
        return b""
