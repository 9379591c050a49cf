"""Pulsar standalone for the local stack: one JVM with a broker, one bookie and RocksDB metadata.

The jars come from Maven Central (`resources/pulsar/pom.xml`, copied with
`mvn dependency:copy-dependencies`); the broker runs with token authentication (HS256, a
secret key generated at each start) and authorization on, the way the operator meets Pulsar
in a real cluster.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import string
import time
import uuid
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import httpx
import jwt

from eventpipeline.devenv.runtime import (
    ComponentError,
    Layout,
    ProcessRecord,
    Reporter,
    port_from_env,
    run_logged,
    start_process,
    wait_until,
)

# 4.0.8 is announced on Maven Central but some of its modules (jetcd-core-shaded,
# pulsar-opentelemetry) are not served there, so 4.0.7 is the newest 4.0.x that resolves.
PULSAR_VERSION = "4.0.7"
CLUSTER_NAME = "standalone"
ADMIN_ROLE = "admin"
MAIN_CLASS = "org.apache.pulsar.PulsarStandaloneStarter"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
INSTALLED_MARKER = ".installed"
START_TIMEOUT_SECONDS = 180.0
HEALTH_TIMEOUT_SECONDS = 3.0

# The flags Pulsar's own start scripts pass on Java 17: its Netty, BookKeeper and metrics code
# reach into JDK internals.
ADD_OPENS = (
    "java.base/java.io",
    "java.base/java.nio",
    "java.base/java.util.zip",
    "java.base/jdk.internal.misc",
    "java.base/jdk.internal.platform",
    "java.base/sun.net",
    "java.management/sun.management",
    "jdk.management/com.sun.management.internal",
)

# Pulsar's scripts give 2 GB heap and 4 GB direct memory. Measured with these limits: about
# 380 MB resident when idle, 590 MB after 200k messages of 1 KB through one topic.
JVM_MEMORY = ("-Xms128m", "-Xmx512m", "-XX:MaxDirectMemorySize=256m")


def _resource_text(name: str) -> str:
    return (resources.files("eventpipeline.devenv") / "resources" / "pulsar" / name).read_text()


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise ComponentError("pulsar", "java not found: install a JDK 17 or set JAVA_HOME")
    return java


def _loopback_interface() -> str:
    """Name of the loopback interface the bookie binds to ('lo' on Linux, 'lo0' on macOS)."""
    names = {name for _, name in socket.if_nameindex()}
    return "lo" if "lo" in names else "lo0"


def sign_token(secret_key: bytes, role: str) -> str:
    """An HS256 token for `role`, without expiry, as Pulsar's AuthenticationProviderToken reads it."""
    return jwt.encode({"sub": role}, secret_key, algorithm="HS256")


class PulsarComponent:
    """Pulsar standalone (broker + bookie in one JVM) with token authentication and authorization."""

    name = "pulsar"

    def __init__(self, version: str = PULSAR_VERSION) -> None:
        self.version = version

    # --- install -------------------------------------------------------------------------

    def libs_dir(self, layout: Layout) -> Path:
        return layout.install_dir(self.name, self.version) / "libs"

    def _fingerprint(self) -> str:
        """What the marker records: a changed pom.xml (an added jar) must redo the install."""
        digest = hashlib.sha256(_resource_text("pom.xml").encode()).hexdigest()[:16]
        return f"{self.version} {digest}\n"

    def _installed(self, layout: Layout) -> bool:
        marker = layout.install_dir(self.name, self.version) / INSTALLED_MARKER
        return marker.exists() and marker.read_text() == self._fingerprint()

    def install(self, layout: Layout, report: Reporter) -> None:
        install_dir = layout.install_dir(self.name, self.version)
        if self._installed(layout):
            report.step(self.name, f"Pulsar {self.version} already installed in {install_dir}")
            return
        (install_dir / INSTALLED_MARKER).unlink(missing_ok=True)
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ComponentError(self.name, "mvn not found: install Maven 3.6+ (Debian: apt-get install maven)")
        install_dir.mkdir(parents=True, exist_ok=True)
        pom = install_dir / "pom.xml"
        pom.write_text(_resource_text("pom.xml"))
        # Copy into a scratch folder first: a half-copied libs/ must never look usable.
        partial = install_dir / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        report.step(self.name, f"downloading Pulsar {self.version} jars from Maven Central (~240 MB)…")
        run_logged(
            self.name,
            [
                mvn,
                "-B",
                "-q",
                "-f",
                pom,
                f"-Dpulsar.version={self.version}",
                f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={partial}",
            ],
            layout.log_path("pulsar-install"),
            cwd=install_dir,
            timeout=1800,
        )
        jars = list(partial.glob("*.jar"))
        if not any(jar.name.startswith("pulsar-broker-") for jar in jars):
            raise ComponentError(self.name, "Maven copied no pulsar-broker jar", layout.log_path("pulsar-install"))
        libs = self.libs_dir(layout)
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
        (install_dir / INSTALLED_MARKER).write_text(self._fingerprint())
        report.step(self.name, f"installed {len(jars)} jars in {libs}")

    # --- start ---------------------------------------------------------------------------

    def start(self, layout: Layout, report: Reporter) -> Mapping[str, str]:
        libs = self.libs_dir(layout)
        if not self._installed(layout):
            raise ComponentError(self.name, f"Pulsar {self.version} is not installed in {libs} (run install first)")
        data = layout.data_dir(self.name)
        broker_port = port_from_env("EVENTPIPELINE_PULSAR_BROKER_PORT")
        web_port = port_from_env("EVENTPIPELINE_PULSAR_WEB_PORT")

        secret_key = secrets.token_bytes(32)
        key_file = _write_secret(data / "token-secret.key", secret_key)
        admin_token = sign_token(secret_key, ADMIN_ROLE)
        _write_secret(data / "admin.token", admin_token.encode())

        config = data / "standalone.conf"
        config.write_text(
            string.Template(_resource_text("standalone.conf")).substitute(
                cluster_name=CLUSTER_NAME,
                broker_port=broker_port,
                web_port=web_port,
                token_secret_key_url=key_file.resolve().as_uri(),
                admin_token=admin_token,
                loopback_interface=_loopback_interface(),
            )
        )
        os.chmod(config, 0o600)  # it holds the admin token
        log_config = data / "log4j2.xml"
        log_config.write_text(_resource_text("log4j2.xml"))
        tmp = data / "tmp"
        tmp.mkdir(exist_ok=True)

        command = [
            _java(),
            *JVM_MEMORY,
            *(f"--add-opens={module}=ALL-UNNAMED" for module in ADD_OPENS),
            "-Dio.netty.tryReflectionSetAccessible=true",
            "-Djava.net.preferIPv4Stack=true",
            f"-Djava.io.tmpdir={tmp}",
            f"-Dlog4j2.configurationFile={log_config}",
            "-cp",
            f"{libs}/*",
            MAIN_CLASS,
            "--config",
            str(config),
            "--no-functions-worker",
            "--no-stream-storage",
            # Explicit paths in the data dir (the defaults are relative to the working
            # directory). The starter picks ZooKeeper mode only if data/standalone/zookeeper
            # exists under the working directory, which the fresh data dir never has.
            "--metadata-dir",
            str(data / "metadata"),
            "--bookkeeper-dir",
            str(data / "bookkeeper"),
        ]
        report.step(self.name, f"starting Pulsar {self.version} standalone (broker :{broker_port}, web :{web_port})…")
        started = time.monotonic()
        # This variable would switch the starter to an embedded ZooKeeper (more ports, more memory).
        env = {key: value for key, value in os.environ.items() if key != "PULSAR_STANDALONE_USE_ZOOKEEPER"}
        process = start_process(layout, self.name, command, cwd=data, env=env)
        admin_url = f"http://127.0.0.1:{web_port}"
        self._wait_ready(layout, process, admin_url, admin_token)
        report.step(self.name, f"ready in {time.monotonic() - started:.1f}s")
        return {
            "PULSAR_SERVICE_URL": f"pulsar://127.0.0.1:{broker_port}",
            "PULSAR_ADMIN_URL": admin_url,
            "PULSAR_ADMIN_TOKEN": admin_token,
            "PULSAR_TOKEN_SECRET_KEY_FILE": str(key_file),
            "PULSAR_CLUSTER": CLUSTER_NAME,
        }

    def _wait_ready(self, layout: Layout, process: ProcessRecord, admin_url: str, admin_token: str) -> None:
        """Wait until an authenticated admin call works, public/default exists and topics can be created.

        The web port opens before the standalone starter has created its cluster, tenant and
        namespace, and a topic needs a writable bookie: only the last check proves all of it.
        """
        log_path = layout.log_path(self.name)
        headers = {"Authorization": f"Bearer {admin_token}"}
        with httpx.Client(base_url=admin_url, headers=headers, timeout=5.0) as client:

            def tenants_listed() -> bool:
                response = client.get("/admin/v2/tenants")
                return response.status_code == 200 and "public" in response.json()

            def default_namespace_exists() -> bool:
                response = client.get("/admin/v2/namespaces/public")
                return response.status_code == 200 and "public/default" in response.json()

            def topic_created() -> bool:
                topic = f"/admin/v2/persistent/public/default/devenv-probe-{uuid.uuid4().hex[:8]}"
                if client.put(topic).status_code != 204:
                    return False
                client.delete(topic, params={"force": "true"})
                return True

            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            for check, what in (
                (tenants_listed, "the admin API to answer with the admin token"),
                (default_namespace_exists, "the namespace public/default"),
                (topic_created, "a topic to be created in public/default"),
            ):
                wait_until(
                    self.name,
                    check,
                    timeout=max(1.0, deadline - time.monotonic()),
                    what=what,
                    log_path=log_path,
                    process=process,
                    interval=1.0,
                )

    # --- health --------------------------------------------------------------------------

    def healthy(self, exports: Mapping[str, str]) -> bool:
        try:
            response = httpx.get(
                f"{exports['PULSAR_ADMIN_URL']}/admin/v2/clusters",
                headers={"Authorization": f"Bearer {exports['PULSAR_ADMIN_TOKEN']}"},
                timeout=HEALTH_TIMEOUT_SECONDS,
            )
        except (KeyError, httpx.HTTPError):
            return False
        return response.status_code == 200


def _write_secret(path: Path, content: bytes) -> Path:
    """Write a file readable by the owner only, created with that mode (never briefly world-readable)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    return path
