"""Pulsar standalone for the local stack: one JVM with a broker, one bookie and RocksDB metadata.

The jars come from Maven Central (`resources/pulsar/pom.xml`, copied with
`mvn dependency:copy-dependencies`); the broker runs with token authentication (HS256, a
secret key generated at each start) and authorization on, the way the operator meets Pulsar
in a real cluster. Besides the plain ports it serves pulsar+ssl:// and https:// with a
certificate signed by the stack's broker CA (`tls.py`).
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import string
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import httpx
import jwt

from eventpipeline_devenv import jvm, tls
from eventpipeline_devenv.runtime import (
    ComponentError,
    Layout,
    ProcessRecord,
    Reporter,
    port_from_env,
    start_process,
    wait_until,
)

# 4.0.8 is announced on Maven Central but some of its modules (jetcd-core-shaded,
# pulsar-opentelemetry) are not served there, so 4.0.7 is the newest 4.0.x that resolves.
PULSAR_VERSION = "4.0.7"
CLUSTER_NAME = "standalone"
ADMIN_ROLE = "admin"
MAIN_CLASS = "org.apache.pulsar.PulsarStandaloneStarter"
# About a minute on an idle machine; just over 180 s (timed out) with a load average of 37 on 2 cores.
START_TIMEOUT_SECONDS = 420.0
# A health check that times out makes `dev up` (and a test session) start the whole stack afresh.
HEALTH_TIMEOUT_SECONDS = 10.0

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

    def install(self, layout: Layout, report: Reporter) -> None:
        jvm.ensure_jars(
            self.name,
            self.version,
            layout.install_dir(self.name, self.version),
            properties={"pulsar.version": self.version},
            expected_jar_prefix="pulsar-broker-",
            log_path=layout.log_path("pulsar-install"),
            report=report,
        )

    # --- start ---------------------------------------------------------------------------

    def start(self, layout: Layout, report: Reporter) -> Mapping[str, str]:
        libs = self.libs_dir(layout)
        if not jvm.installed(self.name, self.version, layout.install_dir(self.name, self.version)):
            raise ComponentError(self.name, f"Pulsar {self.version} is not installed in {libs} (run install first)")
        data = layout.data_dir(self.name)
        broker_port = port_from_env("EVENTPIPELINE_PULSAR_BROKER_PORT")
        web_port = port_from_env("EVENTPIPELINE_PULSAR_WEB_PORT")
        broker_tls_port = port_from_env("EVENTPIPELINE_PULSAR_BROKER_TLS_PORT")
        web_tls_port = port_from_env("EVENTPIPELINE_PULSAR_WEB_TLS_PORT")
        if len({broker_port, web_port, broker_tls_port, web_tls_port}) < 4:
            raise ComponentError(self.name, "the broker, web and TLS ports must all differ")
        certificates = tls.broker_tls(layout)

        secret_key = secrets.token_bytes(32)
        key_file = jvm.write_private(data / "token-secret.key", secret_key)
        admin_token = sign_token(secret_key, ADMIN_ROLE)
        jvm.write_private(data / "admin.token", admin_token.encode())

        config = data / "standalone.conf"
        config.write_text(
            string.Template(jvm.resource_text(self.name, "standalone.conf")).substitute(
                cluster_name=CLUSTER_NAME,
                broker_port=broker_port,
                web_port=web_port,
                broker_tls_port=broker_tls_port,
                web_tls_port=web_tls_port,
                tls_certificate_file=certificates.cert,
                tls_key_file=certificates.key,
                tls_ca_file=certificates.ca_cert,
                token_secret_key_url=key_file.resolve().as_uri(),
                admin_token=admin_token,
                loopback_interface=_loopback_interface(),
            )
        )
        os.chmod(config, 0o600)  # it holds the admin token
        log_config = data / "log4j2.xml"
        log_config.write_text(jvm.resource_text(self.name, "log4j2.xml"))
        tmp = data / "tmp"
        tmp.mkdir(exist_ok=True)

        command = [
            jvm.java(self.name),
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
        tls_admin_url = f"https://127.0.0.1:{web_tls_port}"
        wait_until(
            self.name,
            lambda: _admin_answers(tls_admin_url, admin_token, certificates.ca_cert),
            timeout=30.0,
            what="the admin API on the TLS port",
            log_path=layout.log_path(self.name),
            process=process,
            interval=1.0,
        )
        report.step(
            self.name,
            f"ready in {time.monotonic() - started:.1f}s (TLS: broker :{broker_tls_port}, web :{web_tls_port})",
        )
        return {
            "PULSAR_SERVICE_URL": f"pulsar://127.0.0.1:{broker_port}",
            "PULSAR_ADMIN_URL": admin_url,
            "PULSAR_TLS_SERVICE_URL": f"pulsar+ssl://127.0.0.1:{broker_tls_port}",
            "PULSAR_TLS_ADMIN_URL": tls_admin_url,
            "PULSAR_CA_FILE": str(certificates.ca_cert),
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
        if "PULSAR_TLS_ADMIN_URL" not in exports:
            return False  # started by an older stack without the TLS ports: start it again
        return _admin_answers(exports["PULSAR_ADMIN_URL"], exports["PULSAR_ADMIN_TOKEN"])


def _admin_answers(admin_url: str, admin_token: str, ca_file: Path | None = None) -> bool:
    """Whether an authenticated admin call answers 200 (over https, verified with `ca_file`)."""
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
    try:
        response = httpx.get(
            f"{admin_url}/admin/v2/clusters",
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=HEALTH_TIMEOUT_SECONDS,
            verify=verify,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200
