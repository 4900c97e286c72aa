"""Fixtures for tests against a real control plane (kube-apiserver + etcd from .bin/).

Every test in this directory is marked `integration`. The control plane starts once per
session with the CRDs from config/crd installed; each test gets its own namespace. Missing
binaries are an error naming `make peers`, never a skip.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient

from tests.harness import rbac
from tests.harness.binaries import REPO_ROOT
from tests.harness.controlplane import ControlPlane
from tests.harness.mtping import MtpingProcess, start_mtping
from tests.harness.rest import ApiError
from tests.harness.sinks import RecordingSink

_HERE = Path(__file__).resolve().parent
_PINGSOURCES = "/apis/sources.knative.dev/v1/namespaces/{namespace}/pingsources"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, attach the control plane's log tails to the report."""
    report = yield
    plane = getattr(item, "funcargs", {}).get("control_plane")
    if report.failed and isinstance(plane, ControlPlane):
        report.sections.append(("control plane logs", plane.log_tails()))
    return report


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver for the whole session, with config/crd/*.yaml established."""
    with ControlPlane() as plane:
        plane.install_crds()
        yield plane


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; its PingSources and itself deleted after."""
    name = _namespace_name(request.node.name)
    control_plane.create_namespace(name)
    yield name
    # No controller-manager runs: delete PingSources explicitly so no adapter keeps firing.
    try:
        control_plane.rest.request("DELETE", _PINGSOURCES.format(namespace=name))
        control_plane.delete_namespace(name)
    except (ApiError, OSError) as error:
        pytest.fail(f"could not clean up namespace {name}: {error}")


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:45].rstrip("-")
    return f"t-{slug}-{secrets.token_hex(3)}"


@pytest.fixture
async def admin_api(control_plane: ControlPlane) -> AsyncIterator[ApiClient]:
    """A kubernetes_asyncio ApiClient authenticated as cluster admin (closed after the test)."""
    client = await config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    async with client:
        yield client


# -- running mtping ---------------------------------------------------------------------

SYSTEM_NAMESPACE = "knative-eventing"
SERVICE_ACCOUNT = "pingsource-mt-adapter"


@pytest.fixture(scope="session")
def adapter_kubeconfig(control_plane: ControlPlane) -> Path:
    """A kubeconfig for config/'s ServiceAccount, bound by exactly config/rbac.yaml."""
    control_plane.apply_manifest(REPO_ROOT / "config" / "namespace.yaml")
    control_plane.apply_manifest(REPO_ROOT / "config" / "rbac.yaml")
    rbac.aggregate(control_plane.rest)  # what kube-controller-manager would do
    return control_plane.service_account_kubeconfig(SYSTEM_NAMESPACE, SERVICE_ACCOUNT)


@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    recording = await RecordingSink().start()
    yield recording
    await recording.stop()


@pytest.fixture
def run_mtping(adapter_kubeconfig: Path, tmp_path: Path) -> Iterator[Callable[..., MtpingProcess]]:
    """Start `mtping run` with extra flags; every process started is stopped after the test."""
    started: list[MtpingProcess] = []

    def start(*args: str) -> MtpingProcess:
        process = start_mtping(adapter_kubeconfig, log_dir=tmp_path, args=args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
        assert "Traceback" not in process.log_text(), process.log_text()
