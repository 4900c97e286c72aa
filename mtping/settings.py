"""Settings: frozen dataclasses, one per concern, built once by the CLI and never mutated.

Environment variables of Knative's adapter contract (`K_SINK_TIMEOUT`, `K_NO_SHUTDOWN_AFTER`,
`NAMESPACE`, `SYSTEM_NAMESPACE`, `POD_NAME`) are read here and only here, so a flag and its
variable can never disagree about defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from mtping.delivery import DeliveryPolicy


class Mode(StrEnum):
    STANDALONE = "standalone"
    ADAPTER = "adapter"


class SettingsError(ValueError):
    """A flag or environment variable has a value mtping cannot use."""


@dataclass(frozen=True, slots=True)
class KubeSettings:
    kubeconfig: str | None = None
    """Path of a kubeconfig; None: `$KUBECONFIG`, then in-cluster, then ~/.kube/config."""
    system_namespace: str = "knative-eventing"
    """Where mtping itself runs (`SYSTEM_NAMESPACE`); its ConfigMaps and Lease live here."""
    pod_name: str = "mtping"
    """This replica's name (`POD_NAME`), reported as the source of Kubernetes Events."""
    cluster_domain: str = "cluster.local"
    """Suffix of Service DNS names when a sink refers to a Service."""


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    default_timezone: str = "UTC"
    """Zone of schedules with neither `spec.timezone` nor a CRON_TZ= prefix."""
    catch_up_seconds: float = 10.0
    """Ticks older than this when first seen (clock jumped, process paused) are skipped, not
    sent late in a burst."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    health_port: int = 8080
    """`/health` and `/readiness` (Knative's probe port); 0 disables."""
    metrics_port: int = 9090
    """Prometheus `/metrics`; 0 disables."""
    host: str = "0.0.0.0"
    """Listen address of both servers: the kubelet and Prometheus reach the pod IP."""


@dataclass(frozen=True, slots=True)
class StatusSettings:
    """Standalone mode's writes of PingSource status (conditions are written on change)."""

    delivery_interval: float = 60.0
    """`status.lastDelivery`: at most one write per source per this many seconds; 0: never."""
    delivery_refresh: float = 3600.0
    """An unchanged delivery verdict is rewritten (fresh times) after this many seconds; 0:
    only on a change of verdict."""


class FailurePolicy(StrEnum):
    """What the apiserver does with a PingSource write when the webhook cannot be reached."""

    FAIL = "Fail"
    IGNORE = "Ignore"


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    port: int = 8443
    """HTTPS port of the validating admission webhook (`POST /validate`); 0 disables it."""
    url: str | None = None
    """Set where no Service routes to mtping (the test control plane, `make cluster`): mtping
    then creates its webhook configuration itself, with this `url` as the clientConfig."""
    failure_policy: FailurePolicy = FailurePolicy.FAIL
    service: str = "mtping-webhook"
    """The Service (in the system namespace) the apiserver reaches the webhook through."""
    secret: str = "mtping-webhook-certs"
    """The Secret (in the system namespace) holding the CA list, certificate and key."""
    configuration: str = "pingsource.webhook.mtping.dev"
    """The ValidatingWebhookConfiguration whose caBundle (and failurePolicy) mtping keeps."""
    timeout_seconds: int = 5
    check_interval: float = 300.0
    """Seconds between checks of the Secret and the configuration (renewal, another replica's
    rotation, a re-applied manifest); after a failed check, retried sooner."""


@dataclass(frozen=True, slots=True)
class Settings:
    mode: Mode = Mode.STANDALONE
    kube: KubeSettings = field(default_factory=KubeSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    servers: ServerSettings = field(default_factory=ServerSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    no_shutdown_after: int = 55
    """On SIGTERM after this second of the minute, stay until the minute's ticks are sent
    (`K_NO_SHUTDOWN_AFTER`, as Knative)."""
    per_source_metrics: bool = False
    """Export `mtping_source_events_total` with a series per source (cardinality!)."""
    failure_event_interval: float = 60.0
    """At most one Kubernetes Event write per failing source per this many seconds."""
    drain_seconds: float = 10.0
    """How long shutdown waits for in-flight deliveries."""
    log_format: str = "text"
    log_level: str = "info"


def sink_timeout_from_env(env: Mapping[str, str], default: float | None) -> float | None:
    """`K_SINK_TIMEOUT` in whole seconds; -1 means no timeout (Knative's convention)."""
    raw = env.get("K_SINK_TIMEOUT", "").strip()
    if not raw:
        return default
    seconds = _parse_int("K_SINK_TIMEOUT", raw)
    if seconds == -1:
        return None
    if seconds <= 0:
        raise SettingsError(
            f"K_SINK_TIMEOUT: must be a positive number of seconds or -1, got {raw!r}"
        )
    return float(seconds)


def no_shutdown_after_from_env(env: Mapping[str, str], default: int) -> int:
    raw = env.get("K_NO_SHUTDOWN_AFTER", "").strip()
    if not raw:
        return default
    second = _parse_int("K_NO_SHUTDOWN_AFTER", raw)
    if not 0 <= second <= 59:
        raise SettingsError(f"K_NO_SHUTDOWN_AFTER: must be a second from 0 to 59, got {raw!r}")
    return second


def kube_from_env(env: Mapping[str, str] = os.environ) -> KubeSettings:
    defaults = KubeSettings()
    return KubeSettings(
        system_namespace=env.get("SYSTEM_NAMESPACE")
        or env.get("NAMESPACE")
        or defaults.system_namespace,
        pod_name=env.get("POD_NAME") or defaults.pod_name,
    )


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}: not a whole number: {raw!r}") from None
