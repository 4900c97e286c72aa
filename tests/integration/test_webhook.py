"""mtping's validating admission webhook, called by the real kube-apiserver.

`mtping run --webhook-url https://127.0.0.1:<port>/validate` runs as config/rbac.yaml's
ServiceAccount (plus config/webhook-url-rbac.yaml, the one extra grant of the URL shape): it
generates its certificate into a Secret, creates its ValidatingWebhookConfiguration with that
CA, and the apiserver calls it on every PingSource create and update. A configuration left
behind would refuse every later test's creates, so every test deletes it (and the Secret, the
ConfigMap and the Service it may have made) after mtping has stopped.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509

from mtping.certs import CertPolicy, issue, serving_names
from tests.harness.binaries import REPO_ROOT
from tests.harness.controlplane import ControlPlane
from tests.harness.manifests import load_manifests
from tests.harness.mtping import MtpingProcess
from tests.harness.process import free_port
from tests.harness.rest import ApiError, Credentials, RestClient
from tests.harness.sinks import RecordingSink
from tests.integration.support import count_from, create_source, pingsource_path

SYSTEM_NAMESPACE = "knative-eventing"
CONFIGURATION = "pingsource.webhook.mtping.dev"
SECRET = "mtping-webhook-certs"
CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
SECRETS = f"/api/v1/namespaces/{SYSTEM_NAMESPACE}/secrets"
CONFIG_MAPS = f"/api/v1/namespaces/{SYSTEM_NAMESPACE}/configmaps"
SERVICES = f"/api/v1/namespaces/{SYSTEM_NAMESPACE}/services"
DENIED = f'admission webhook "{CONFIGURATION}" denied the request: '
NOT_PEM = "MIIBszCCAVmgAwIBAgIUZ"


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def clean_webhook_state(control_plane: ControlPlane, adapter_kubeconfig: object) -> Iterator[None]:
    """Grant the URL shape's extra `create`; afterwards delete all a test may leave behind.

    Requested before `run_mtping`, so it is torn down after mtping has stopped.
    """
    control_plane.apply_manifest(REPO_ROOT / "config" / "webhook-url-rbac.yaml")
    yield
    for path in (
        f"{CONFIGURATIONS}/{CONFIGURATION}",
        f"{SECRETS}/{SECRET}",
        f"{CONFIG_MAPS}/config-ping-defaults",
        f"{SERVICES}/mtping-webhook",
    ):
        delete_if_present(control_plane, path)


def delete_if_present(plane: ControlPlane, path: str) -> None:
    try:
        plane.rest.request("DELETE", path)
    except ApiError as error:
        if error.status != 404:
            raise


@dataclass
class Webhook:
    """Starts `mtping run` with the webhook in the URL shape and waits until it is in force."""

    plane: ControlPlane
    namespace: str
    run_mtping: Callable[..., MtpingProcess]
    port: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/validate"

    async def start(self, *flags: str) -> MtpingProcess:
        mtping = self.run_mtping(f"--webhook-port={self.port}", f"--webhook-url={self.url}", *flags)
        await mtping.wait_ready()
        await asyncio.to_thread(self.wait_in_force)
        return mtping

    def wait_in_force(self, timeout: float = 15.0) -> None:
        """Until the apiserver calls the webhook: a dry-run create of a bad source is denied."""
        deadline = time.monotonic() + timeout
        while True:
            error = refusal(self.plane, self.namespace, {"timezone": "UTC+8"}, dry_run=True)
            if error is not None and DENIED in error.message:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the webhook is not in force: {error}")
            time.sleep(0.1)


@pytest.fixture
def webhook(
    clean_webhook_state: None,
    control_plane: ControlPlane,
    namespace: str,
    run_mtping: Callable[..., MtpingProcess],
) -> Webhook:
    return Webhook(control_plane, namespace, run_mtping, free_port())


def source_body(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def refusal(
    plane: ControlPlane,
    namespace: str,
    changes: dict[str, Any],
    *,
    dry_run: bool = False,
    name: str = "probe",
) -> ApiError | None:
    """The apiserver's error creating a source with `changes`; None if it was created."""
    spec = {"schedule": "0 0 1 1 *", "sink": {"uri": "http://127.0.0.1:9/"}, **changes}
    path = pingsource_path(namespace) + ("?dryRun=All" if dry_run else "")
    try:
        plane.rest.request("POST", path, body=source_body(namespace, name, spec))
    except ApiError as error:
        return error
    return None


def secret_data(plane: ControlPlane) -> tuple[dict[str, bytes], str]:
    secret = plane.rest.get(f"{SECRETS}/{SECRET}")
    data = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    assert secret["type"] == "kubernetes.io/tls"
    return data, secret["metadata"]["resourceVersion"]


def configuration(plane: ControlPlane) -> dict[str, Any]:
    (hook,) = plane.rest.get(f"{CONFIGURATIONS}/{CONFIGURATION}")["webhooks"]
    return dict(hook)


def trusted_ca(plane: ControlPlane) -> bytes:
    return base64.b64decode(configuration(plane)["clientConfig"]["caBundle"])


def wait_for_condition(
    plane: ControlPlane, namespace: str, name: str, kind: str, *, timeout: float
) -> dict[str, Any]:
    """The source's condition of type `kind`, once it has one."""
    found: list[dict[str, Any]] = []

    def has_it() -> bool:
        status = plane.rest.get(pingsource_path(namespace, name)).get("status") or {}
        found[:] = [c for c in status.get("conditions") or [] if c["type"] == kind]
        return bool(found)

    wait_for(has_it, timeout=timeout, what=f"condition {kind} on {name}")
    return found[0]


def wait_for(probe: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


# -- each bad case is refused ----------------------------------------------------------------

REF = {"apiVersion": "v1", "kind": "Service", "name": "sink"}
# (case, spec changes, field named, text of the reason, refused by the webhook or the CRD)
BAD_CASES: list[tuple[str, dict[str, Any], str, str, str]] = [
    ("bad schedule", {"schedule": "0 25 * * *"}, "spec.schedule", "25", "webhook"),
    ("@every", {"schedule": "@every 1m"}, "spec.schedule", "@every", "crd"),
    ("UTC+8", {"timezone": "UTC+8"}, "spec.timezone", "did you mean 'Etc/GMT-8'?", "webhook"),
    ("CST", {"timezone": "CST"}, "spec.timezone", "'America/Chicago'", "webhook"),
    (
        "ref+absolute uri",
        {"sink": {"ref": REF, "uri": "http://a/"}},
        "spec.sink",
        "relative",
        "crd",
    ),
    ("uri without host", {"sink": {"uri": "http:///x"}}, "spec.sink", "absolute", "crd"),
    ("ftp", {"sink": {"uri": "ftp://a/"}}, "spec.sink.uri", "http or https", "webhook"),
    (
        "ref in another namespace",
        {"sink": {"ref": {**REF, "namespace": "elsewhere"}}},
        "spec.sink.ref.namespace",
        "must equal the PingSource's namespace",
        "webhook",
    ),
    (
        "CACerts not PEM",
        {"sink": {"uri": "https://a/", "CACerts": NOT_PEM}},
        "spec.sink.CACerts",
        "PEM",
        "webhook",
    ),
    ("data+dataBase64", {"data": "a", "dataBase64": "YQ=="}, "spec", "mutually exclusive", "crd"),
    ("bad base64", {"dataBase64": "abc"}, "spec.dataBase64", "not valid base64", "webhook"),
    (
        "invalid JSON",
        {"contentType": "application/json", "data": "{oops"},
        "spec.data",
        "is not valid JSON",
        "webhook",
    ),
    (
        "over data-max-size",
        {"data": "x" * 17},
        "spec.data",
        "17 bytes, over the limit of 16 bytes",
        "webhook",
    ),
    (
        "reserved extension",
        {"ceOverrides": {"extensions": {"id": "x"}}},
        "spec.ceOverrides.extensions.id",
        "CloudEvents context attribute",
        "webhook",
    ),
    (
        "bad extension name",
        {"ceOverrides": {"extensions": {"my-ext": "x"}}},
        "spec.ceOverrides.extensions",
        "ASCII letters or digits",
        "crd",
    ),
]


def refused_as_expected(error: ApiError | None, field: str, reason: str, by: str) -> str | None:
    """None when `error` is the expected refusal, else what is wrong with it."""
    if error is None:
        return "admitted"
    causes = error.details.get("details", {}).get("causes", [])
    named = any(cause.get("field") == field and reason in cause["message"] for cause in causes)
    if error.status != 422 or not named:
        return f"{error.status}: {error.message} (causes {causes})"
    if by == "webhook" and not error.message.startswith(DENIED + f"{field}: "):
        return f"not the webhook's message: {error.message}"
    if by == "crd" and DENIED in error.message:
        return f"the CRD did not refuse it first: {error.message}"
    return None


async def test_each_bad_case_is_refused_at_create_with_the_field_named(
    control_plane: ControlPlane, namespace: str, sink: RecordingSink, webhook: Webhook
) -> None:
    control_plane.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "config-ping-defaults", "namespace": SYSTEM_NAMESPACE},
            "data": {"data-max-size": "16"},
        }
    )
    await webhook.start()
    create_source(
        control_plane, namespace, "good", {"schedule": "* * * * * *", "sink": {"uri": sink.url}}
    )
    await sink.wait_for(count_from("good", 1), timeout=5)

    wrong: dict[str, str] = {}
    for case, changes, field, reason, by in BAD_CASES:
        error = await asyncio.to_thread(refusal, control_plane, namespace, changes)
        if problem := refused_as_expected(error, field, reason, by):
            wrong[case] = problem
    assert wrong == {}
    assert [item["metadata"]["name"] for item in listed(control_plane, namespace)] == ["good"]

    # data-max-size follows the ConfigMap as it changes, without a restart.
    control_plane.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "config-ping-defaults", "namespace": SYSTEM_NAMESPACE},
            "data": {"data-max-size": "-1"},
        }
    )
    await asyncio.to_thread(
        wait_for,
        lambda: refusal(control_plane, namespace, {"data": "x" * 17}, dry_run=True) is None,
        timeout=10,
        what="data-max-size -1 to be in force",
    )
    # The good source kept firing throughout: not one second missed.
    await sink.wait_for(count_from("good", len(sink.from_source("good")) + 1), timeout=3)
    instants = sorted(r.ce_time for r in sink.from_source("good"))
    assert {b - a for a, b in itertools.pairwise(instants)} == {timedelta(seconds=1)}


def listed(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    return list(plane.rest.get(pingsource_path(namespace))["items"])


async def test_an_update_to_a_bad_spec_is_refused_and_a_good_one_admitted(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    await webhook.start()
    create_source(control_plane, namespace, "edited", {"sink": {"uri": "http://127.0.0.1:9/"}})
    path = pingsource_path(namespace, "edited")
    merge = "application/merge-patch+json"

    with pytest.raises(ApiError) as refused:
        control_plane.rest.request(
            "PATCH", path, body={"spec": {"timezone": "Berlin"}}, content_type=merge
        )
    assert refused.value.message == (
        DENIED + "spec.timezone: unknown time zone 'Berlin': did you mean 'Europe/Berlin'?"
    )
    control_plane.rest.request(
        "PATCH", path, body={"spec": {"timezone": "Europe/Berlin"}}, content_type=merge
    )
    assert control_plane.rest.get(path)["spec"]["timezone"] == "Europe/Berlin"


# -- certificate, Secret and configuration ---------------------------------------------------


async def test_the_secret_holds_the_ca_the_configuration_trusts_and_a_restart_reuses_it(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    mtping = await webhook.start()

    data, version = secret_data(control_plane)
    hook = configuration(control_plane)
    assert trusted_ca(control_plane) == data["ca.crt"]
    assert hook["clientConfig"]["url"] == webhook.url
    assert hook["failurePolicy"] == "Fail"
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert "mtping-webhook.knative-eventing.svc" in alt.get_values_for_type(x509.DNSName)

    mtping.stop()
    await webhook.start()

    assert secret_data(control_plane) == (data, version)  # reused: not even rewritten
    assert trusted_ca(control_plane) == data["ca.crt"]


async def test_failure_policy_fail_refuses_writes_while_mtping_is_down(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    mtping = await webhook.start("--webhook-failure-policy=Fail")
    mtping.stop()

    error = refusal(control_plane, namespace, {})

    assert error is not None
    assert f'failed calling webhook "{CONFIGURATION}"' in error.message
    assert listed(control_plane, namespace) == []


async def test_a_certificate_close_to_expiry_is_rotated_and_the_ca_bundle_updated(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    names = serving_names(
        service="mtping-webhook", namespace=SYSTEM_NAMESPACE, url_host="127.0.0.1"
    )
    policy = CertPolicy()
    expiring = issue(names, now=datetime.now(UTC) - policy.validity + timedelta(hours=1))
    control_plane.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": SYSTEM_NAMESPACE},
            "type": "kubernetes.io/tls",
            "data": {
                key: base64.b64encode(value).decode()
                for key, value in (
                    ("ca.crt", expiring.ca_pem),
                    ("tls.crt", expiring.cert_pem),
                    ("tls.key", expiring.key_pem),
                )
            },
        }
    )

    await webhook.start("--webhook-failure-policy=Ignore")

    data, _ = secret_data(control_plane)
    assert data["tls.crt"] != expiring.cert_pem
    renewed = x509.load_pem_x509_certificate(data["tls.crt"])
    assert renewed.not_valid_after_utc - datetime.now(UTC) > policy.validity - timedelta(hours=1)
    new_ca, old_ca = x509.load_pem_x509_certificates(data["ca.crt"])
    assert old_ca == x509.load_pem_x509_certificate(expiring.ca_pem)  # trusted until it expires
    renewed.verify_directly_issued_by(new_ca)
    assert trusted_ca(control_plane) == data["ca.crt"]
    assert configuration(control_plane)["failurePolicy"] == "Ignore"


async def test_with_the_webhook_down_and_ignore_a_bad_source_is_admitted_but_never_fired(
    control_plane: ControlPlane, namespace: str, sink: RecordingSink, webhook: Webhook
) -> None:
    every_second = {"schedule": "* * * * * *", "sink": {"uri": sink.url}}
    mtping = await webhook.start("--webhook-failure-policy=Ignore")
    create_source(control_plane, namespace, "good", every_second)
    mtping.stop()

    create_source(control_plane, namespace, "bad", {**every_second, "timezone": "UTC+8"})

    restarted = await webhook.start("--webhook-failure-policy=Ignore")
    ready = await asyncio.to_thread(
        wait_for_condition, control_plane, namespace, "bad", "Ready", timeout=10
    )
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].endswith(
        "spec.timezone: unknown time zone 'UTC+8': did you mean 'Etc/GMT-8'? IANA 'Etc/GMT' "
        "names use the POSIX sign, which is flipped: 'Etc/GMT-8' is UTC+8. A Region/City zone "
        "also follows that place's DST."
    )
    await sink.wait_for(count_from("good", 3), timeout=8)
    assert restarted.metric("mtping_sources_unscheduled", reason="invalid") == 1.0
    assert sink.from_source("bad") == []
    assert {item["metadata"]["name"] for item in listed(control_plane, namespace)} == {
        "good",
        "bad",
    }


# -- RBAC ------------------------------------------------------------------------------------


def test_the_service_account_reads_its_own_secret_and_no_other(
    control_plane: ControlPlane, adapter_kubeconfig: object, clean_webhook_state: None
) -> None:
    token = control_plane.service_account_token(SYSTEM_NAMESPACE, "pingsource-mt-adapter")
    adapter = RestClient(
        Credentials(server=control_plane.server_url, ca_file=control_plane.pki.ca_cert, token=token)
    )
    decoy = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "decoy"}, "data": {}}
    control_plane.rest.request("POST", SECRETS, body=decoy)
    try:
        for method, path, body in (
            ("GET", f"{SECRETS}/decoy", None),
            ("GET", SECRETS, None),
            ("POST", SECRETS, {**decoy, "metadata": {"name": SECRET}}),
        ):
            with pytest.raises(ApiError) as denied:
                adapter.request(method, path, body=body)
            assert denied.value.status == 403, (method, path)
    finally:
        control_plane.rest.request("DELETE", f"{SECRETS}/decoy")


# -- the Service shape -----------------------------------------------------------------------


async def test_the_service_shape_configuration_gets_the_ca_and_keeps_its_service(
    control_plane: ControlPlane,
    namespace: str,
    clean_webhook_state: None,
    run_mtping: Callable[..., MtpingProcess],
) -> None:
    """config/webhook.yaml as installed in a cluster: mtping only injects caBundle and sets
    failurePolicy. The apiserver cannot call it here (no kube-proxy, no endpoints), so this
    checks the configuration, not admission; it is applied with failurePolicy Ignore and
    deleted after the test, so no other test's creates depend on an unreachable Service."""
    for obj in load_manifests(REPO_ROOT / "config" / "webhook.yaml"):
        if obj["kind"] == "ValidatingWebhookConfiguration":
            obj["webhooks"][0]["failurePolicy"] = "Ignore"
        control_plane.apply(obj)
    shipped = configuration(control_plane)
    assert "caBundle" not in shipped["clientConfig"]

    mtping = run_mtping(f"--webhook-port={free_port()}")
    await mtping.wait_ready()
    await asyncio.to_thread(
        wait_for,
        lambda: "caBundle" in configuration(control_plane)["clientConfig"],
        timeout=15,
        what="caBundle injected",
    )
    mtping.stop()  # failurePolicy is Fail from here: no PingSource writes until it is deleted

    data, _ = secret_data(control_plane)
    hook = configuration(control_plane)
    assert trusted_ca(control_plane) == data["ca.crt"]
    assert hook["clientConfig"]["service"] == shipped["clientConfig"]["service"]
    assert "url" not in hook["clientConfig"]
    assert hook["failurePolicy"] == "Fail"  # mtping's flag (default) wins over the manifest
    assert {k: v for k, v in hook.items() if k not in ("clientConfig", "failurePolicy")} == {
        k: v for k, v in shipped.items() if k not in ("clientConfig", "failurePolicy")
    }
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.DNSName) == [
        "mtping-webhook.knative-eventing.svc",
        "mtping-webhook.knative-eventing.svc.cluster.local",
    ]
    delete_if_present(control_plane, f"{CONFIGURATIONS}/{CONFIGURATION}")
