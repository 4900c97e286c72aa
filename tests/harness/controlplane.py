"""A real, throw-away Kubernetes control plane (etcd + kube-apiserver) on loopback ports.

Its job is what envtest does for controller-runtime: start the genuine binaries with
self-made certificates, wait until they serve, write an admin kubeconfig, install CRDs,
mint least-privilege ServiceAccount kubeconfigs, and inject faults (stop, kill, restart
either process). It must never run a controller, scheduler or kubelet, never touch a real
cluster, and never leave a process behind (see tests.harness.process).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.harness import binaries
from tests.harness.certs import PkiFiles, write_pki
from tests.harness.kubeconfig import write_kubeconfig
from tests.harness.manifests import Applier, group_version_path, load_manifests
from tests.harness.process import ManagedProcess, free_port, wait_until
from tests.harness.rest import ApiError, Credentials, RestClient

CRD_DIR = binaries.REPO_ROOT / "config" / "crd"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CRD_API = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
_START_TIMEOUT = 90.0
_CRD_TIMEOUT = 60.0
_TOKEN_LIFETIME_S = 24 * 3600
# A direct opener: loopback must not go through any configured proxy.
_PLAIN_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ControlPlaneError(RuntimeError):
    """The control plane could not start or answer; the message carries its log tails."""


class ControlPlane:
    """etcd + kube-apiserver for tests; a context manager (start on enter, stop on exit)."""

    def __init__(self, *, state_dir: Path | None = None) -> None:
        self._owns_state_dir = state_dir is None
        self.state_dir = (
            Path(tempfile.mkdtemp(prefix="mtping-cp-")) if state_dir is None else state_dir
        ).resolve()
        self.etcd_client_port = 0
        self.etcd_peer_port = 0
        self.apiserver_port = 0
        self.timings: dict[str, float] = {}
        self._etcd: ManagedProcess | None = None
        self._apiserver: ManagedProcess | None = None
        self._pki: PkiFiles | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start a fresh etcd, then the apiserver; on any failure stop everything and raise."""
        began = time.monotonic()
        try:
            binaries.require(binaries.ETCD)
            binaries.require(binaries.KUBE_APISERVER)
            self._prepare()
            self.start_etcd()
            self.timings["etcd_ready_s"] = time.monotonic() - began
            self.start_apiserver()
            self.timings["apiserver_ready_s"] = time.monotonic() - began
        except BaseException:
            self.stop()
            raise
        write_kubeconfig(self.kubeconfig, self.admin_credentials)
        return self

    def stop(self) -> None:
        """Stop the apiserver, then etcd; remove the state dir if this object created it."""
        self.stop_apiserver()
        self.stop_etcd()
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _prepare(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Every start() is a fresh cluster: stale members would pin etcd to old peer ports.
        shutil.rmtree(self.state_dir / "etcd-data", ignore_errors=True)
        self.etcd_client_port = free_port()
        self.etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self._pki = write_pki(self.state_dir / "pki")

    # -- where and who ---------------------------------------------------------------------

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_client_port}"

    @property
    def kubeconfig(self) -> Path:
        """The admin (system:masters) kubeconfig."""
        return self.state_dir / "kubeconfig"

    @property
    def pki(self) -> PkiFiles:
        if self._pki is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._pki

    @property
    def admin_credentials(self) -> Credentials:
        return Credentials(
            server=self.server_url,
            ca_file=self.pki.ca_cert,
            cert_file=self.pki.admin_cert,
            key_file=self.pki.admin_key,
        )

    @property
    def rest(self) -> RestClient:
        """A fresh admin REST client (cheap; holds no connection)."""
        return RestClient(self.admin_credentials)

    # -- etcd ------------------------------------------------------------------------------

    def start_etcd(self) -> None:
        """Start etcd on the chosen ports (keeping its data dir) and wait until healthy."""
        self._etcd = ManagedProcess(self._etcd_argv(), log_path=self.state_dir / "etcd.log")
        self._await(self._etcd, self._etcd_healthy, what="etcd /health")

    def stop_etcd(self) -> None:
        if self._etcd is not None:
            self._etcd.stop()
            self._etcd = None

    def kill_etcd(self) -> None:
        """SIGKILL etcd (its data dir survives; fsync is off, so recent writes may not)."""
        if self._etcd is not None:
            self._etcd.kill()
            self._etcd = None

    def restart_etcd(self) -> None:
        self.stop_etcd()
        self.start_etcd()

    def _etcd_argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        return [
            str(binaries.require(binaries.ETCD)),
            "--name=harness",
            f"--data-dir={self.state_dir / 'etcd-data'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=harness={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _etcd_healthy(self) -> bool:
        try:
            answer = _get_json(f"{self.etcd_url}/health")
        except (OSError, ValueError, TypeError):
            return False
        return answer.get("health") == "true"

    def etcd_version(self) -> str:
        """The server version etcd reports on its /version endpoint."""
        return str(_get_json(f"{self.etcd_url}/version")["etcdserver"])

    # -- kube-apiserver --------------------------------------------------------------------

    def start_apiserver(self) -> None:
        """Start the apiserver (same port, certs and etcd as before) and wait until it serves."""
        self._apiserver = ManagedProcess(
            self._apiserver_argv(), log_path=self.state_dir / "kube-apiserver.log"
        )
        self._await(self._apiserver, self._apiserver_serving, what="kube-apiserver /healthz")

    def stop_apiserver(self) -> None:
        if self._apiserver is not None:
            self._apiserver.stop()
            self._apiserver = None

    def kill_apiserver(self) -> None:
        """SIGKILL the apiserver: open connections drop without a goodbye."""
        if self._apiserver is not None:
            self._apiserver.kill()
            self._apiserver = None

    def restart_apiserver(self) -> None:
        self.stop_apiserver()
        self.start_apiserver()

    def _apiserver_argv(self) -> list[str]:
        pki = self.pki
        return [
            str(binaries.require(binaries.KUBE_APISERVER)),
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--etcd-servers={self.etcd_url}",
            f"--cert-dir={self.state_dir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_private_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            # No Endpoints for the `kubernetes` Service: 127.0.0.1 is not a valid endpoint IP.
            "--endpoint-reconciler-type=none",
        ]

    def _apiserver_serving(self) -> bool:
        rest = self.rest
        return rest.reachable("/healthz") and rest.reachable("/api/v1/namespaces/default")

    def apiserver_version(self) -> str:
        """The gitVersion the apiserver reports on /version (e.g. 'v1.34.4')."""
        return str(self.rest.get("/version")["gitVersion"])

    # -- waiting, logs, resources ----------------------------------------------------------

    def _await(self, process: ManagedProcess, ready: Callable[[], bool], *, what: str) -> None:
        def ready_or_dead() -> bool:
            if not process.running():
                raise ControlPlaneError(
                    f"{process.name} exited with status {process.returncode()} "
                    f"while waiting for {what}\n{self.log_tails()}"
                )
            return bool(ready())

        try:
            wait_until(ready_or_dead, timeout=_START_TIMEOUT, interval=0.1, what=what)
        except TimeoutError as error:
            raise ControlPlaneError(f"{error}\n{self.log_tails()}") from error

    def processes(self) -> dict[str, ManagedProcess]:
        """The running processes by binary name."""
        running = {"etcd": self._etcd, "kube-apiserver": self._apiserver}
        return {name: process for name, process in running.items() if process is not None}

    def log_tails(self) -> str:
        """The end of each component's log, for failure messages."""
        parts = []
        for name in ("etcd", "kube-apiserver"):
            log = self.state_dir / f"{name}.log"
            text = log.read_text(errors="replace")[-6000:] if log.exists() else "(no log)"
            parts.append(f"----- {name} log ({log}) -----\n{text}")
        return "\n".join(parts)

    # -- API objects -----------------------------------------------------------------------

    def apply(self, obj: dict[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """Server-side apply one object (create or update); the object as stored."""
        return Applier(self.rest).apply(obj, namespace=namespace)

    def apply_manifest(self, path: Path, *, namespace: str | None = None) -> list[dict[str, Any]]:
        """Server-side apply every object in the YAML file at `path`."""
        return Applier(self.rest).apply_file(path, namespace=namespace)

    def install_crds(self, paths: Iterable[Path] | None = None) -> list[str]:
        """Apply the CRD files (default: config/crd/*.yaml); wait until each is usable."""
        chosen = sorted(CRD_DIR.glob("*.yaml")) if paths is None else list(paths)
        if not chosen:
            raise ControlPlaneError(f"no CRD manifests found in {CRD_DIR}")
        began = time.monotonic()
        names = [crd["metadata"]["name"] for path in chosen for crd in self._apply_crds(path)]
        for name in names:
            self._await_crd(name)
        self.timings["crds_established_s"] = time.monotonic() - began
        return names

    def _apply_crds(self, path: Path) -> list[dict[str, Any]]:
        applier = Applier(self.rest)
        crds = [obj for obj in load_manifests(path) if obj["kind"] == "CustomResourceDefinition"]
        return [applier.apply(crd) for crd in crds]

    def _await_crd(self, name: str) -> None:
        wait_until(
            lambda: self._crd_usable(name), timeout=_CRD_TIMEOUT, what=f"CRD {name} established"
        )

    def _crd_usable(self, name: str) -> bool:
        crd = self.rest.get(f"{CRD_API}/{name}")
        reported = (crd.get("status") or {}).get("conditions") or []
        conditions = {condition["type"]: condition["status"] for condition in reported}
        if conditions.get("Established") != "True":
            return False
        return all(self._served(crd, version) for version in served_versions(crd))

    def _served(self, crd: dict[str, Any], version: str) -> bool:
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        try:
            listing = self.rest.get(group_version_path(f"{group}/{version}"))
        except ApiError:
            return False
        return any(entry["name"] == plural for entry in listing.get("resources", []))

    def create_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        self.rest.request("POST", "/api/v1/namespaces", body=body)

    def delete_namespace(self, name: str) -> None:
        """Delete the namespace (no controller-manager runs, so it stays Terminating)."""
        self.rest.request("DELETE", f"/api/v1/namespaces/{name}")

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """Create ServiceAccount `name` and a kubeconfig authenticating as it with a token."""
        token = self.service_account_token(namespace, name)
        credentials = Credentials(server=self.server_url, ca_file=self.pki.ca_cert, token=token)
        path = self.state_dir / f"kubeconfig-{namespace}-{name}"
        return write_kubeconfig(path, credentials)

    def service_account_token(self, namespace: str, name: str) -> str:
        """Ensure ServiceAccount `name` exists; a fresh token for it via the TokenRequest API."""
        accounts = f"/api/v1/namespaces/{namespace}/serviceaccounts"
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
        try:
            self.rest.request("POST", accounts, body=account)
        except ApiError as error:
            if error.status != 409:
                raise
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": _TOKEN_LIFETIME_S},  # outlives a long `up` session
        }
        answer = self.rest.request("POST", f"{accounts}/{name}/token", body=request)
        return str(answer["status"]["token"])


def served_versions(crd: dict[str, Any]) -> list[str]:
    """The names of the CRD's versions that are served."""
    return [version["name"] for version in crd["spec"]["versions"] if version.get("served")]


def _get_json(url: str) -> dict[str, Any]:
    with _PLAIN_HTTP.open(url, timeout=2.0) as answer:
        decoded = json.loads(answer.read())
    if not isinstance(decoded, dict):
        raise TypeError(f"{url} answered {decoded!r}, not a JSON object")
    return decoded
