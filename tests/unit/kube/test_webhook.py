"""The webhook's trust keeping without an apiserver: patches, configurations, ordering."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtping.certs import ServingBundle, issue, serving_names
from mtping.kube.errors import KubeError
from mtping.kube.webhook import (
    WebhookReconciler,
    bundle_from_secret,
    trust_patch,
    url_configuration,
    webhook_entry,
)
from mtping.settings import FailurePolicy, WebhookSettings

CONFIG = Path(__file__).parents[3] / "config"
SETTINGS = WebhookSettings()
NOW = datetime(2026, 3, 1, tzinfo=UTC)
NAMES = serving_names(service="mtping-webhook", namespace="knative-eventing")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def manifest(name: str) -> dict[str, dict[str, Any]]:
    documents = yaml.safe_load_all((CONFIG / name).read_text())
    return {document["kind"]: document for document in documents}


def test_config_webhook_yaml_is_the_configuration_mtping_maintains() -> None:
    shipped = manifest("webhook.yaml")
    (hook,) = shipped["ValidatingWebhookConfiguration"]["webhooks"]
    client_config = hook.pop("clientConfig")
    assert hook == webhook_entry(SETTINGS)
    assert shipped["ValidatingWebhookConfiguration"]["metadata"]["name"] == SETTINGS.configuration
    assert client_config == {
        "service": {
            "name": SETTINGS.service,
            "namespace": "knative-eventing",
            "path": "/validate",
            "port": 443,
        }
    }


def test_the_webhook_service_reaches_the_deployment_s_webhook_port() -> None:
    service = manifest("webhook.yaml")["Service"]
    pod = manifest("deployment.yaml")["Deployment"]["spec"]["template"]
    (port,) = service["spec"]["ports"]
    assert service["metadata"]["name"] == SETTINGS.service
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (port["port"], named[port["targetPort"]]) == (443, SETTINGS.port)
    assert "webhook.yaml" in (CONFIG / "kustomization.yaml").read_text()


def test_rbac_names_the_one_secret_and_the_one_configuration() -> None:
    documents = list(yaml.safe_load_all((CONFIG / "rbac.yaml").read_text()))
    rules = [rule for document in documents for rule in document.get("rules") or []]
    secrets = [rule for rule in rules if "secrets" in rule["resources"]]
    configurations = [
        rule for rule in rules if "validatingwebhookconfigurations" in rule["resources"]
    ]
    assert secrets == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [SETTINGS.secret],
            "verbs": ["get", "create", "patch"],
        }
    ]
    assert [(rule["resourceNames"], rule["verbs"]) for rule in configurations] == [
        ([SETTINGS.configuration], ["get", "patch"])
    ]


def test_the_url_shape_configuration_carries_url_ca_and_failure_policy() -> None:
    settings = replace(
        SETTINGS, url="https://127.0.0.1:9443/validate", failure_policy=FailurePolicy.IGNORE
    )
    applied = url_configuration(settings, b"CA PEM")

    (hook,) = applied["webhooks"]
    assert applied["metadata"]["name"] == "pingsource.webhook.mtping.dev"
    assert hook["clientConfig"] == {
        "url": "https://127.0.0.1:9443/validate",
        "caBundle": b64(b"CA PEM"),
    }
    assert hook["failurePolicy"] == "Ignore"
    assert hook["rules"][0]["apiVersions"] == ["v1", "v1beta2", "v1beta1"]
    assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]


def configuration(*hooks: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "c", "resourceVersion": "42"}, "webhooks": list(hooks)}


def test_trust_patch_sets_ca_bundle_and_policy_of_every_webhook_pinned_to_the_version() -> None:
    current = configuration(
        {"name": "a", "clientConfig": {"service": {"name": "s"}}, "failurePolicy": "Fail"},
        {"name": "b", "clientConfig": {"caBundle": b64(b"old")}, "failurePolicy": "Ignore"},
    )
    assert trust_patch(current, ca_pem=b"new", policy="Fail") == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": b64(b"new")},
        {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": b64(b"new")},
        {"op": "add", "path": "/webhooks/1/failurePolicy", "value": "Fail"},
    ]


def test_trust_patch_is_empty_when_nothing_differs() -> None:
    current = configuration(
        {"name": "a", "clientConfig": {"caBundle": b64(b"ca")}, "failurePolicy": "Fail"}
    )
    assert trust_patch(current, ca_pem=b"ca", policy="Fail") == []


def test_secret_data_reads_as_a_bundle_and_junk_as_empty() -> None:
    data = {"ca.crt": b64(b"ca"), "tls.crt": b64(b"cert"), "tls.key": "%%not base64"}
    assert bundle_from_secret(data) == ServingBundle(b"ca", b"cert", b"")
    assert bundle_from_secret(None) == ServingBundle(b"", b"", b"")


# -- ordering of one reconcile ---------------------------------------------------------------


@dataclass
class Steps:
    log: list[str] = field(default_factory=list)


@dataclass
class FakeSecret:
    steps: Steps
    bundle: ServingBundle

    async def ensure(self) -> ServingBundle:
        self.steps.log.append("secret")
        return self.bundle


@dataclass
class FakeConfiguration:
    steps: Steps
    fails: bool = False
    trusted: bytes = b""

    async def trust(self, ca_pem: bytes) -> None:
        self.steps.log.append("trust")
        if self.fails:
            raise KubeError("forbidden")
        self.trusted = ca_pem


@dataclass
class FakeServer:
    steps: Steps
    serving: ServingBundle | None = None

    async def serve(self, bundle: ServingBundle) -> None:
        self.steps.log.append("serve")
        self.serving = bundle


@pytest.fixture(scope="module")
def bundles() -> tuple[ServingBundle, ServingBundle]:
    first = issue(NAMES, now=NOW)
    return first, issue(NAMES, now=NOW, previous=first)


def reconciler(
    bundle: ServingBundle, *, fails: bool = False, serving: ServingBundle | None = None
) -> tuple[WebhookReconciler, FakeConfiguration, FakeServer, Steps]:
    steps = Steps()
    trust = FakeConfiguration(steps, fails=fails)
    server = FakeServer(steps, serving)
    built = WebhookReconciler(
        secret=FakeSecret(steps, bundle), configuration=trust, server=server, check_interval=60
    )
    return built, trust, server, steps


async def test_the_ca_is_trusted_before_its_certificate_is_served(
    bundles: tuple[ServingBundle, ServingBundle],
) -> None:
    first, second = bundles
    built, trust, server, steps = reconciler(second, serving=first)

    await built.reconcile()

    assert steps.log == ["secret", "trust", "serve"]
    assert (trust.trusted, server.serving) == (second.ca_pem, second)


async def test_when_trust_fails_the_old_certificate_stays_served(
    bundles: tuple[ServingBundle, ServingBundle],
) -> None:
    first, second = bundles
    built, _, server, steps = reconciler(second, fails=True, serving=first)

    with pytest.raises(KubeError):
        await built.reconcile()

    assert steps.log == ["secret", "trust"]
    assert server.serving == first


async def test_when_trust_fails_at_start_the_certificate_is_served_anyway(
    bundles: tuple[ServingBundle, ServingBundle],
) -> None:
    first, _ = bundles
    built, _, server, steps = reconciler(first, fails=True)

    with pytest.raises(KubeError):
        await built.reconcile()

    assert steps.log == ["secret", "trust", "serve"]
    assert server.serving == first
