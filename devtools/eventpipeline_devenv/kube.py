"""Kubernetes control plane for the local stack: etcd, kube-apiserver, kube-controller-manager.

No kubelet and no scheduler run, so pods never start; what the operator needs is the API
(CRDs, watches, RBAC) and the controller-manager's garbage collector and namespace
controller, which delete owned objects and finish namespace deletion.

The binaries (plus kubectl and helm) are built from the Go module proxy, because that is
the one registry every development machine can reach. `k8s.io/kubernetes` cannot be
`go install`ed (its go.mod replaces its staging modules with local paths), so a wrapper
module under `resources/kube/kubernetes` requires it and replaces every staging module with
its published release; `resources/kube/etcd` does the same for etcd. Both carry a go.sum,
so a build resolves exactly the same module versions everywhere.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from eventpipeline_devenv import tls
from eventpipeline_devenv.runtime import (
    ComponentError,
    Layout,
    ProcessRecord,
    Reporter,
    port_from_env,
    run_logged,
    start_process,
    wait_until,
)

NAME = "kube"
KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v3.22.0"
# The release time the module proxy reports for k8s.io/kubernetes@v1.36.3; a fixed value keeps
# the binaries reproducible (it is what `kubectl version -o json` shows as buildDate).
KUBERNETES_BUILD_DATE = "2026-07-22T18:07:38Z"
# Helm's Makefile derives its default Kubernetes version (used by `helm template` without a
# cluster) from the client-go it is built with: v0.37.x for helm v3.22.0.
HELM_DEFAULT_KUBE_MINOR = "37"

KUBERNETES_BINARIES = ("kube-apiserver", "kube-controller-manager", "kubectl")
# Only controllers that do something without nodes. The garbage collector and the namespace
# controller are what the operator's tests rely on; the service-account controllers create the
# `default` ServiceAccount in each namespace (and its token), the root-CA publisher the
# `kube-root-ca.crt` ConfigMap that clients in pods would read.
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# etcd's default backend quota is 2 GiB; a test stack holds a few hundred small objects.
ETCD_QUOTA_BYTES = 512 * 1024 * 1024

INSTALL_TIMEOUT_SECONDS = 60 * 60
ETCD_TIMEOUT_SECONDS = 30.0
APISERVER_TIMEOUT_SECONDS = 120.0
CONTROLLER_MANAGER_TIMEOUT_SECONDS = 90.0
HEALTH_TIMEOUT_SECONDS = 2.5


@dataclass(frozen=True)
class _Pki:
    """Files of the throwaway certificate authority generated at each start."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    controller_manager_cert: Path
    controller_manager_key: Path
    service_account_key: Path
    service_account_public_key: Path


@dataclass(frozen=True)
class _Run:
    """What every process of one start shares."""

    layout: Layout
    report: Reporter
    bin_dir: Path
    data: Path
    pki: _Pki


class KubeComponent:
    """etcd + kube-apiserver + kube-controller-manager on loopback, with kubectl and helm."""

    name = NAME
    version = KUBERNETES_VERSION.removeprefix("v")

    # ---- install -------------------------------------------------------------------------

    def install(self, layout: Layout, report: Reporter) -> None:
        install_dir = layout.install_dir(NAME, self.version)
        marker = install_dir / ".installed"
        bin_dir = install_dir / "bin"
        if marker.exists():
            if json.loads(marker.read_text()) == _versions():
                report.step(NAME, f"binaries cached in {bin_dir}")
                return
            # Built with other etcd/helm pins under the same Kubernetes version: rebuild all.
            marker.unlink()
            shutil.rmtree(bin_dir, ignore_errors=True)
        go = shutil.which("go")
        if go is None:
            raise ComponentError(NAME, "the Go toolchain (go ≥ 1.26) is needed to build the control plane")
        bin_dir.mkdir(parents=True, exist_ok=True)
        log = layout.log_path("kube-build")
        env = _go_environment()
        report.step(NAME, f"building the control plane with {go} (cold: 10-20 min on 2 cores; log {log})")
        started = time.monotonic()
        steps = _build_steps(install_dir / "build", bin_dir)
        for index, (binary, arguments, cwd) in enumerate(steps, start=1):
            if (bin_dir / binary).exists():
                continue  # built by an earlier, interrupted install; each binary lands atomically
            report.step(NAME, f"building {binary} ({index}/{len(steps)})…")
            step_started = time.monotonic()
            step_env = {**env, "GOBIN": str(bin_dir / ".helm")} if binary == "helm" else env
            run_logged(NAME, [go, *arguments], log, cwd=cwd, env=step_env, timeout=INSTALL_TIMEOUT_SECONDS)
            if binary == "helm":
                (bin_dir / ".helm" / "helm").replace(bin_dir / "helm")
                shutil.rmtree(bin_dir / ".helm")
            else:
                (bin_dir / f".{binary}.tmp").replace(bin_dir / binary)
            report.step(NAME, f"built {binary} in {time.monotonic() - step_started:.0f}s")
        marker.write_text(json.dumps(_versions()))
        report.step(NAME, f"control plane built in {time.monotonic() - started:.0f}s")

    # ---- start ---------------------------------------------------------------------------

    def start(self, layout: Layout, report: Reporter) -> Mapping[str, str]:
        bin_dir = layout.install_dir(NAME, self.version) / "bin"
        data = layout.data_dir(NAME)
        report.step(NAME, "generating certificates")
        pki = _generate_pki(data / "pki")
        run = _Run(layout=layout, report=report, bin_dir=bin_dir, data=data, pki=pki)

        etcd_port = port_from_env("EVENTPIPELINE_KUBE_ETCD_PORT")
        _start_etcd(run, etcd_port)

        api_port = port_from_env("EVENTPIPELINE_KUBE_APISERVER_PORT")
        server = f"https://127.0.0.1:{api_port}"
        kubeconfig = data / "kubeconfig"
        _write_kubeconfig(kubeconfig, server, pki.ca_cert, pki.admin_cert, pki.admin_key)
        apiserver = _start_apiserver(run, etcd_port, api_port)
        client = _admin_client(server, pki.ca_cert, pki.admin_cert, pki.admin_key)
        try:
            wait_until(
                NAME,
                lambda: _ready(client),
                timeout=APISERVER_TIMEOUT_SECONDS,
                what="kube-apiserver /readyz",
                log_path=Path(apiserver.log_path),
                process=apiserver,
            )
            controller_manager = _start_controller_manager(run, server)
            # The `default` ServiceAccount is created by the controller-manager's serviceaccount
            # controller: seeing it proves the controller-manager talks to the API and works.
            wait_until(
                NAME,
                lambda: client.get("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200,
                timeout=CONTROLLER_MANAGER_TIMEOUT_SECONDS,
                what="the controller-manager to create the default ServiceAccount",
                log_path=Path(controller_manager.log_path),
                process=controller_manager,
            )
        finally:
            client.close()
        return {
            "KUBECONFIG": str(kubeconfig),
            "KUBECTL": str(bin_dir / "kubectl"),
            "HELM": str(bin_dir / "helm"),
            "KUBE_BIN_DIR": str(bin_dir),
        }

    # ---- health --------------------------------------------------------------------------

    def healthy(self, exports: Mapping[str, str]) -> bool:
        path = exports.get("KUBECONFIG")
        if not path or not Path(path).exists():
            return False
        try:
            server, ca_cert, cert, key = _kubeconfig_credentials(Path(path))
            with _admin_client(server, ca_cert, cert, key) as client:
                return _ready(client)
        except (OSError, httpx.HTTPError, ssl.SSLError, KeyError, ValueError):
            return False


# ---- processes ---------------------------------------------------------------------------


def _start_etcd(run: _Run, port: int) -> ProcessRecord:
    peer_port = port_from_env("EVENTPIPELINE_KUBE_ETCD_PEER_PORT")
    client_url = f"http://127.0.0.1:{port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    run.report.step(NAME, f"starting etcd {ETCD_VERSION} on {client_url}")
    record = start_process(
        run.layout,
        "kube-etcd",
        [
            run.bin_dir / "etcd",
            "--name=devenv",
            f"--data-dir={run.data / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=devenv={peer_url}",
            # Test data is disposable: skipping fsync makes every API write much faster.
            "--unsafe-no-fsync=true",
            f"--quota-backend-bytes={ETCD_QUOTA_BYTES}",
            "--log-level=warn",
        ],
    )

    def etcd_healthy() -> bool:
        response = httpx.get(f"{client_url}/health", timeout=HEALTH_TIMEOUT_SECONDS)
        return response.status_code == 200 and response.json().get("health") == "true"

    wait_until(
        NAME,
        etcd_healthy,
        timeout=ETCD_TIMEOUT_SECONDS,
        what="etcd /health",
        log_path=Path(record.log_path),
        process=record,
    )
    return record


def _start_apiserver(run: _Run, etcd_port: int, port: int) -> ProcessRecord:
    run.report.step(NAME, f"starting kube-apiserver {KUBERNETES_VERSION} on https://127.0.0.1:{port}")
    return start_process(
        run.layout,
        "kube-apiserver",
        [
            run.bin_dir / "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--secure-port={port}",
            "--bind-address=127.0.0.1",
            # Without it, a host with no default route fails with "no default routes".
            "--advertise-address=127.0.0.1",
            f"--cert-dir={run.data / 'apiserver'}",
            f"--tls-cert-file={run.pki.serving_cert}",
            f"--tls-private-key-file={run.pki.serving_key}",
            f"--client-ca-file={run.pki.ca_cert}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            # The `kubernetes` Service's endpoint would be 127.0.0.1, which Endpoints reject
            # ("may not be in the loopback range"); no pod runs here to use it anyway.
            "--endpoint-reconciler-type=none",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={run.pki.service_account_public_key}",
            f"--service-account-signing-key-file={run.pki.service_account_key}",
        ],
    )


def _start_controller_manager(run: _Run, server: str) -> ProcessRecord:
    kubeconfig = run.data / "controller-manager.kubeconfig"
    _write_kubeconfig(
        kubeconfig, server, run.pki.ca_cert, run.pki.controller_manager_cert, run.pki.controller_manager_key
    )
    run.report.step(NAME, f"starting kube-controller-manager ({', '.join(CONTROLLERS)})")
    return start_process(
        run.layout,
        "kube-controller-manager",
        [
            run.bin_dir / "kube-controller-manager",
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            # Its own HTTPS endpoint (metrics, healthz) is not needed; 0 opens no port at all.
            "--secure-port=0",
            "--leader-elect=false",
            f"--controllers={','.join(CONTROLLERS)}",
            f"--service-account-private-key-file={run.pki.service_account_key}",
            f"--root-ca-file={run.pki.ca_cert}",
        ],
    )


# ---- building ----------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    return {"kubernetes": KUBERNETES_VERSION, "etcd": ETCD_VERSION, "helm": HELM_VERSION}


def _go_environment() -> dict[str, str]:
    """Static binaries, no local paths baked in, and no go.work of the caller interfering."""
    return {
        **os.environ,
        "CGO_ENABLED": "0",
        "GOFLAGS": "-trimpath -mod=readonly",
        "GOWORK": "off",
    }


def _build_steps(build_root: Path, bin_dir: Path) -> list[tuple[str, list[str], Path]]:
    """(binary, go arguments, working directory) for each binary, in build order."""
    etcd_module = _copy_wrapper(build_root, "etcd")
    kube_module = _copy_wrapper(build_root, "kubernetes")
    return [
        ("etcd", _go_build(bin_dir / "etcd", "go.etcd.io/etcd/server/v3", _etcd_ldflags()), etcd_module),
        *(
            (
                binary,
                _go_build(bin_dir / binary, f"k8s.io/kubernetes/cmd/{binary}", _kube_ldflags()),
                kube_module,
            )
            for binary in KUBERNETES_BINARIES
        ),
        # helm's go.mod has no replace lines, so `go install module@version` works as is.
        (
            "helm",
            ["install", "-ldflags", _helm_ldflags(), f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"],
            bin_dir,
        ),
    ]


def _copy_wrapper(build_root: Path, module: str) -> Path:
    """Copy a committed wrapper go.mod/go.sum into the cache; the build runs there."""
    target = build_root / module
    target.mkdir(parents=True, exist_ok=True)
    source = importlib.resources.files("eventpipeline_devenv") / "resources" / NAME / module
    for name in ("go.mod", "go.sum"):
        (target / name).write_bytes((source / name).read_bytes())
    return target


def _go_build(output: Path, package: str, ldflags: str) -> list[str]:
    # Written beside the final name and renamed after success, so a half-built binary is never used.
    return ["build", "-ldflags", ldflags, "-o", str(output.parent / f".{output.name}.tmp"), package]


def _kube_ldflags() -> str:
    """Version stamping as Kubernetes' own build does it: `/version` must report the real
    gitVersion, or Helm's `kubeVersion` checks fail on `v0.0.0-master`."""
    minor = KUBERNETES_VERSION.split(".")[1]
    values = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": "1",
        "gitMinor": minor,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": KUBERNETES_BUILD_DATE,
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    return " ".join(flags)


def _etcd_ldflags() -> str:
    return f"-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA={ETCD_VERSION}"


def _helm_ldflags() -> str:
    prefix = "helm.sh/helm/v3"
    flags = [
        "-s",
        "-w",
        f"-X {prefix}/internal/version.version={HELM_VERSION}",
        f"-X {prefix}/internal/version.gitTreeState=clean",
    ]
    for package in ("pkg/lint/rules", "pkg/chartutil"):
        flags += [
            f"-X {prefix}/{package}.k8sVersionMajor=1",
            f"-X {prefix}/{package}.k8sVersionMinor={HELM_DEFAULT_KUBE_MINOR}",
        ]
    return " ".join(flags)


# ---- certificates ------------------------------------------------------------------------


def _generate_pki(directory: Path) -> _Pki:
    """A throwaway CA, the apiserver's serving certificate, two client certificates in
    `system:masters`, and the service-account signing key pair."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key, ca_cert = tls.new_ca("eventpipeline-devenv-ca")
    tls.write_cert(directory / "ca.crt", ca_cert)

    def leaf(file_stem: str, subject: x509.Name, server: bool) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        if server:
            certificate = tls.serving_certificate(ca_key, ca_cert, subject, key.public_key())
        else:
            certificate = (
                tls.certificate_builder(subject, ca_cert.subject, key.public_key())
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
        tls.write_cert(directory / f"{file_stem}.crt", certificate)
        tls.write_key(directory / f"{file_stem}.key", key)

    leaf("apiserver", x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]), server=True)
    # `system:masters` is the group the apiserver authorizes for everything, before RBAC.
    for stem, common_name in (("admin", "admin"), ("controller-manager", "system:kube-controller-manager")):
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        leaf(stem, subject, server=False)

    service_account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tls.write_key(directory / "sa.key", service_account_key)
    (directory / "sa.pub").write_bytes(
        service_account_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return _Pki(
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        controller_manager_cert=directory / "controller-manager.crt",
        controller_manager_key=directory / "controller-manager.key",
        service_account_key=directory / "sa.key",
        service_account_public_key=directory / "sa.pub",
    )


# ---- kubeconfig and API access -------------------------------------------------------------


def _write_kubeconfig(path: Path, server: str, ca_cert: Path, cert: Path, key: Path) -> None:
    """A kubeconfig that points at the certificate files (absolute paths) in the data dir."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "eventpipeline-dev",
                "cluster": {"server": server, "certificate-authority": str(ca_cert)},
            }
        ],
        "users": [
            {
                "name": "eventpipeline-dev-admin",
                "user": {"client-certificate": str(cert), "client-key": str(key)},
            }
        ],
        "contexts": [
            {
                "name": "eventpipeline-dev",
                "context": {
                    "cluster": "eventpipeline-dev",
                    "user": "eventpipeline-dev-admin",
                    "namespace": "default",
                },
            }
        ],
        "current-context": "eventpipeline-dev",
        "preferences": {},
    }
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _kubeconfig_credentials(path: Path) -> tuple[str, Path, Path, Path]:
    """Server and certificate paths of the current context of a kubeconfig written above."""
    config = yaml.safe_load(path.read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    return (
        str(cluster["server"]),
        Path(cluster["certificate-authority"]),
        Path(user["client-certificate"]),
        Path(user["client-key"]),
    )


def _admin_client(server: str, ca_cert: Path, cert: Path, key: Path) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(ca_cert))
    context.load_cert_chain(str(cert), str(key))
    return httpx.Client(base_url=server, verify=context, timeout=HEALTH_TIMEOUT_SECONDS)


def _ready(client: httpx.Client) -> bool:
    response = client.get("/readyz")
    return response.status_code == 200 and response.text.strip() == "ok"
