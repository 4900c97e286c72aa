"""The harness's control plane is the real thing: what these tests prove the apiserver does.

Version reporting, CRD discovery and server-side schema enforcement, v1beta1 -> v1 round trips,
a kubernetes_asyncio watch surviving an apiserver SIGKILL, RBAC from config/rbac.yaml, and
Knative's own peers (event_display, knative-mtping) running against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import secrets
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import config, watch
from kubernetes_asyncio.client import ApiClient, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from tests.harness import binaries
from tests.harness.controlplane import ControlPlane
from tests.harness.manifests import load_manifests
from tests.harness.peers import start_event_display, start_knative_mtping, wait_until_listening
from tests.harness.rest import MERGE_PATCH, ApiError, Credentials, RestClient
from tests.harness.sinks import RecordingSink

GROUP = "sources.knative.dev"
PLURAL = "pingsources"
CONFIG_DIR = binaries.REPO_ROOT / "config"
TUTORIAL_SAMPLE = CONFIG_DIR / "samples" / "hello-world.yaml"
RBAC_MANIFEST = CONFIG_DIR / "rbac.yaml"
SYSTEM_NAMESPACE_MANIFEST = CONFIG_DIR / "namespace.yaml"


def pingsource(name: str, spec: dict[str, Any], *, version: str = "v1") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{version}",
        "kind": "PingSource",
        "metadata": {"name": name},
        "spec": spec,
    }


def collection(namespace: str, *, version: str = "v1") -> str:
    return f"/apis/{GROUP}/{version}/namespaces/{namespace}/{PLURAL}"


# -- versions and discovery --------------------------------------------------------------------


def test_apiserver_and_etcd_report_the_versions_of_the_built_binaries(
    control_plane: ControlPlane,
) -> None:
    assert control_plane.apiserver_version() == binaries.version_line(binaries.KUBE_APISERVER)
    assert control_plane.etcd_version() == binaries.version_line(binaries.ETCD)


def test_every_served_pingsource_version_is_discoverable(control_plane: ControlPlane) -> None:
    group = control_plane.rest.get(f"/apis/{GROUP}")
    assert [entry["version"] for entry in group["versions"]] == ["v1", "v1beta2", "v1beta1"]
    assert group["preferredVersion"]["version"] == "v1"
    for version in ("v1", "v1beta2", "v1beta1"):
        resources = control_plane.rest.get(f"/apis/{GROUP}/{version}")["resources"]
        by_name = {resource["name"]: resource for resource in resources}
        assert {"list", "watch", "create"} <= set(by_name[PLURAL]["verbs"])
        assert f"{PLURAL}/status" in by_name


# -- the apiserver enforces the CRD schema -----------------------------------------------------

SINK = {"uri": "http://sink.example/"}


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        pytest.param({"schedule": "* * * * *"}, "spec.sink", "Required value", id="no-sink"),
        pytest.param(
            {"data": "a", "dataBase64": "YQ==", "sink": SINK},
            "spec",
            "spec.data and spec.dataBase64 are mutually exclusive",
            id="data-and-dataBase64",
        ),
        pytest.param(
            {"schedule": 5, "sink": SINK},
            "spec.schedule",
            "must be of type string",
            id="schedule-not-a-string",
        ),
        pytest.param(
            {"schedule": "@every 1m", "sink": SINK},
            "spec.schedule",
            "@every descriptor is not supported",
            id="every-descriptor",
        ),
        pytest.param(
            {"schedule": "*" * 1025, "sink": SINK},
            "spec.schedule",
            "may not be more than 1024 bytes",
            id="schedule-too-long",
        ),
        pytest.param(
            {"timezone": "Europe/Berlin Time", "sink": SINK},
            "spec.timezone",
            "must be an IANA time zone name",
            id="timezone-with-space",
        ),
        pytest.param({"sink": {}}, "spec.sink", "must set ref, uri, or both", id="empty-sink"),
        pytest.param(
            {"sink": {"ref": {"apiVersion": "v1", "kind": "Service"}}},
            "spec.sink.ref.name",
            "Required value",
            id="ref-without-name",
        ),
        pytest.param(
            {"sink": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "s"}, **SINK}},
            "spec.sink",
            "must be relative",
            id="ref-with-absolute-uri",
        ),
        pytest.param(
            {"sink": {"uri": "/no/host"}}, "spec.sink", "must be absolute", id="uri-without-host"
        ),
        pytest.param(
            {"dataBase64": "a-_b", "sink": SINK},
            "spec.dataBase64",
            "URL-safe base64",
            id="url-safe-base64",
        ),
        pytest.param(
            {"jsonData": "{}", "data": "x", "sink": SINK},
            "spec",
            "cannot be combined with spec.data",
            id="json-data-and-data",
        ),
        pytest.param(
            {"ceOverrides": {"extensions": {"my-ext": "x"}}, "sink": SINK},
            "spec.ceOverrides.extensions",
            "ASCII letters or digits",
            id="extension-name",
        ),
    ],
)
def test_apiserver_rejects_an_invalid_pingsource_naming_the_field(
    control_plane: ControlPlane, namespace: str, spec: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ApiError) as rejected:
        control_plane.rest.request("POST", collection(namespace), body=pingsource("invalid", spec))
    assert (rejected.value.status, rejected.value.reason) == (422, "Invalid")
    causes = rejected.value.details["details"]["causes"]
    assert any(c["field"] == field and message in c["message"] for c in causes), causes
    assert control_plane.rest.get(collection(namespace))["items"] == []


# -- versions round-trip without losing fields -------------------------------------------------


async def test_tutorial_v1beta1_pingsource_keeps_json_data_through_v1(
    control_plane: ControlPlane, namespace: str, admin_api: ApiClient
) -> None:
    (applied,) = control_plane.apply_manifest(TUTORIAL_SAMPLE, namespace=namespace)
    name = applied["metadata"]["name"]
    objects = CustomObjectsApi(admin_api)

    as_v1 = await objects.get_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, name)
    assert as_v1["apiVersion"] == f"{GROUP}/v1"
    assert as_v1["spec"]["jsonData"] == '{"message": "hello, world!"}'

    # A v1 client updating the object must not prune the v1beta1-only field either.
    patch = [{"op": "replace", "path": "/spec/schedule", "value": "*/2 * * * *"}]
    await objects.patch_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, name, patch)
    as_v1beta1 = await objects.get_namespaced_custom_object(
        GROUP, "v1beta1", namespace, PLURAL, name
    )
    assert as_v1beta1["spec"]["jsonData"] == '{"message": "hello, world!"}'
    assert as_v1beta1["spec"]["schedule"] == "*/2 * * * *"


# -- a kubernetes_asyncio watch survives an apiserver crash ------------------------------------


async def watch_added_names(
    api: ApiClient, namespace: str, *, seen: asyncio.Queue[str], failures: list[BaseException]
) -> None:
    """What an informer does: list, watch from the list's resourceVersion, and on an error
    re-watch from the last one seen (re-list on 410 Gone). Each name is put on `seen` once."""
    objects = CustomObjectsApi(api)
    known: set[str] = set()
    resource_version: str | None = None
    while True:
        try:
            if resource_version is None:
                resource_version = await relist(objects, namespace, known=known, seen=seen)
            async with watch.Watch() as stream:
                events = stream.stream(
                    objects.list_namespaced_custom_object,
                    GROUP,
                    "v1",
                    namespace,
                    PLURAL,
                    resource_version=resource_version,
                )
                async for event in events:
                    resource_version = event["raw_object"]["metadata"]["resourceVersion"]
                    announce(event["raw_object"]["metadata"]["name"], known=known, seen=seen)
        except ApiException as error:
            failures.append(error)
            if error.status == HTTPStatus.GONE:  # the restarted watch cache starts later
                resource_version = None
            await asyncio.sleep(0.2)
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            failures.append(error)
            await asyncio.sleep(0.2)


async def relist(
    objects: CustomObjectsApi, namespace: str, *, known: set[str], seen: asyncio.Queue[str]
) -> str:
    listing = await objects.list_namespaced_custom_object(GROUP, "v1", namespace, PLURAL)
    for item in listing["items"]:
        announce(item["metadata"]["name"], known=known, seen=seen)
    return str(listing["metadata"]["resourceVersion"])


def announce(name: str, *, known: set[str], seen: asyncio.Queue[str]) -> None:
    if name not in known:
        known.add(name)
        seen.put_nowait(name)


async def create_pingsource(api: ApiClient, namespace: str, name: str) -> None:
    body = pingsource(name, {"schedule": "0 0 1 1 *", "sink": SINK})
    await CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, "v1", namespace, PLURAL, body
    )


async def test_watch_resumes_after_the_apiserver_is_killed_and_restarted(
    control_plane: ControlPlane, namespace: str, admin_api: ApiClient
) -> None:
    seen: asyncio.Queue[str] = asyncio.Queue()
    failures: list[BaseException] = []
    watcher = asyncio.create_task(
        watch_added_names(admin_api, namespace, seen=seen, failures=failures)
    )
    try:
        await create_pingsource(admin_api, namespace, "before")
        async with asyncio.timeout(10):
            assert await seen.get() == "before"
        control_plane.kill_apiserver()
        await asyncio.to_thread(control_plane.start_apiserver)
        await create_pingsource(admin_api, namespace, "after")
        async with asyncio.timeout(30):
            assert await seen.get() == "after"
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert any(isinstance(failure, aiohttp.ClientError) for failure in failures), failures
    assert seen.empty(), "re-watching must not announce 'before' again"


# -- least privilege from config/rbac.yaml -----------------------------------------------------


def pingsource_reader_role() -> str:
    """The ClusterRole in config/rbac.yaml that grants reading PingSources."""
    for obj in load_manifests(RBAC_MANIFEST):
        if obj["kind"] == "ClusterRole" and any(
            PLURAL in rule.get("resources", []) for rule in obj.get("rules", [])
        ):
            return str(obj["metadata"]["name"])
    raise AssertionError(f"{RBAC_MANIFEST} has no ClusterRole granting {PLURAL}")


def bind_cluster_role(control_plane: ControlPlane, *, role: str, namespace: str) -> str:
    name = f"{namespace}-reader"
    control_plane.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        }
    )
    return name


async def list_when_allowed(objects: CustomObjectsApi) -> dict[str, Any]:
    """List PingSources cluster-wide, retrying 403s while the RBAC cache catches up."""
    while True:
        try:
            listing: dict[str, Any] = await objects.list_cluster_custom_object(GROUP, "v1", PLURAL)
        except ApiException as error:
            if error.status != 403:
                raise
            await asyncio.sleep(0.1)
        else:
            return listing


async def first_watched_name(objects: CustomObjectsApi, namespace: str) -> str:
    async with watch.Watch() as stream:
        events = stream.stream(
            objects.list_namespaced_custom_object, GROUP, "v1", namespace, PLURAL, timeout_seconds=5
        )
        async for event in events:
            return str(event["raw_object"]["metadata"]["name"])
    raise AssertionError("the watch ended without an event")


async def test_service_account_reads_pingsources_only_once_bound_to_the_rbac_role(
    control_plane: ControlPlane, namespace: str, admin_api: ApiClient
) -> None:
    kubeconfig = control_plane.service_account_kubeconfig(namespace, "reader")
    async with await config.new_client_from_config(config_file=str(kubeconfig)) as reader_api:
        objects = CustomObjectsApi(reader_api)
        with pytest.raises(ApiException) as denied:
            await objects.list_cluster_custom_object(GROUP, "v1", PLURAL)
        assert denied.value.status == 403

        control_plane.apply_manifest(SYSTEM_NAMESPACE_MANIFEST)
        control_plane.apply_manifest(RBAC_MANIFEST)
        binding = bind_cluster_role(
            control_plane, role=pingsource_reader_role(), namespace=namespace
        )
        try:
            await create_pingsource(admin_api, namespace, "visible")
            async with asyncio.timeout(10):
                listing = await list_when_allowed(objects)
            assert "visible" in {item["metadata"]["name"] for item in listing["items"]}
            assert await first_watched_name(objects, namespace) == "visible"
        finally:
            control_plane.rest.request(
                "DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{binding}"
            )


def test_rbac_manifest_grants_its_service_account_pingsources_and_no_secrets(
    control_plane: ControlPlane,
) -> None:
    control_plane.apply_manifest(SYSTEM_NAMESPACE_MANIFEST)
    control_plane.apply_manifest(RBAC_MANIFEST)
    token = control_plane.service_account_token("knative-eventing", "pingsource-mt-adapter")
    adapter = RestClient(
        Credentials(server=control_plane.server_url, ca_file=control_plane.pki.ca_cert, token=token)
    )
    assert adapter.get(f"/apis/{GROUP}/v1/{PLURAL}")["kind"] == "PingSourceList"
    for forbidden in ("/api/v1/secrets", "/api/v1/namespaces/default/configmaps"):
        with pytest.raises(ApiError) as denied:
            adapter.get(forbidden)
        assert denied.value.status == 403, forbidden


# -- Knative's own peers -----------------------------------------------------------------------


async def test_event_display_prints_a_binary_mode_cloudevent(tmp_path: Path) -> None:
    display = start_event_display(log_dir=tmp_path)
    event_id = f"harness-{secrets.token_hex(4)}"
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": "dev.mtping.harness.test",
        "ce-source": "/tests/harness",
        "content-type": "application/json",
    }
    try:
        async with asyncio.timeout(20):
            await wait_until_listening(display)
        async with (
            aiohttp.ClientSession() as session,
            session.post(display.url, data=b'{"hello": "display"}', headers=headers) as answer,
        ):
            assert answer.status < 300
        async with asyncio.timeout(10):
            log = await display.wait_for_log(event_id)
    finally:
        display.stop()
    assert "type: dev.mtping.harness.test" in log
    assert '"hello": "display"' in log


async def test_knative_mtping_delivers_a_ready_pingsource_to_its_sink(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    sink = await RecordingSink().start()
    adapter = start_knative_mtping(control_plane.kubeconfig, log_dir=tmp_path)
    try:
        spec = {"schedule": "* * * * * *", "contentType": "text/plain", "data": "hi"}
        body = pingsource("ping", {**spec, "sink": {"uri": sink.url}})
        control_plane.rest.request("POST", collection(namespace), body=body)
        mark_ready(control_plane, namespace, "ping", sink_uri=sink.url)
        await sink.wait_for(lambda received: len(received) > 0, timeout=30)
    finally:
        adapter.stop()
        await sink.stop()
    delivery = sink.received[0]
    assert delivery.headers["ce-type"] == "dev.knative.sources.ping"
    assert delivery.headers["ce-source"] == f"/apis/v1/namespaces/{namespace}/pingsources/ping"
    assert delivery.body == b"hi"


def mark_ready(control_plane: ControlPlane, namespace: str, name: str, *, sink_uri: str) -> None:
    """Write the status a Knative controller would: Ready, with the resolved sink URI."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ready = {"type": "Ready", "status": "True", "lastTransitionTime": now}
    status = {"status": {"sinkUri": sink_uri, "conditions": [ready]}}
    path = f"{collection(namespace)}/{name}/status"
    control_plane.rest.request("PATCH", path, body=status, content_type=MERGE_PATCH)
