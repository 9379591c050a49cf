"""A single-node Kafka broker for the local stack: KRaft combined mode, SASL/SCRAM and ACLs.

The jars come from Maven Central (`kafka_2.13` with its runtime dependencies, plus log4j2 and
the SLF4J binding the release tarball would add), copied by Maven into the install's `libs/`.
One JVM is both controller and broker. Clients reach it with SCRAM-SHA-512 on a SASL_PLAINTEXT
listener and on a SASL_SSL listener whose certificate the stack's broker CA signed (`tls.py`);
the controller listener is PLAINTEXT on loopback. The StandardAuthorizer denies
everything without an ACL, so the stack's tests exercise the same authorization as production.
The admin's SCRAM credential is written into the metadata log when the storage is formatted,
because the broker needs it before it can serve any request (it logs in to itself with it).
Next to it goes the credential of an unused anchor user (`SCRAM_ANCHOR_USER`), which keeps the
broker's SCRAM logins alive across restarts: see its comment.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import secrets
import string
import uuid
from collections.abc import Mapping
from pathlib import Path

from eventpipeline_devenv import jvm, tls
from eventpipeline_devenv.runtime import (
    ComponentError,
    Layout,
    Reporter,
    port_from_env,
    port_open,
    run_logged,
    start_process,
    wait_until,
)

KAFKA_VERSION = "4.4.0"
ADMIN_USER = "admin"
SECURITY_PROTOCOL = "SASL_PLAINTEXT"
TLS_SECURITY_PROTOCOL = "SASL_SSL"
SASL_MECHANISM = "SCRAM-SHA-512"
# Works around a Kafka bug (seen in 4.4.0, `org.apache.kafka.image.ScramDelta.apply`): a node that
# starts replays its metadata log into one delta from the empty image, and `apply` walks the delta's
# SCRAM changes in HashMap order; when the first change it meets is a deletion (of a user the
# operator deleted), it finds the mechanism's user map empty and drops it, and every later user goes
# into the dropped map. The broker then starts with no SCRAM-SHA-512 credential at all and refuses
# every login, the admin's included (seen at the second or third restart of a stack once the operator
# had deleted users; replaying 20,000 random histories with deletions, 10,313 lost every user). The
# anchor is a user that is never deleted, whose name has String.hashCode() 0, so it lies in bucket 0
# at every table size, and whose credential is a bootstrap record of the format, so in that bucket
# only the admin's (never deleted either) can come before it: the first change met is never a
# deletion (0 of the same 20,000 lost a user). It has no ACL and its password is thrown away.
SCRAM_ANCHOR_USER = "devenv-scram-anchor-hapvcvv"

# Measured with this heap (Kafka 4.4.0, Java 17): about 225 MiB RSS idle after start, about
# 305 MiB after producing and consuming 200k 1 KB messages.
JVM_OPTIONS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
# The storage tool runs for about a second: the C1 compiler alone starts it ~40% faster.
TOOL_JVM_OPTIONS = ("-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
# Measured: 25-40 s on an idle machine, over 120 s (timed out) with a load average of 34 on 2 cores.
START_TIMEOUT = 300.0
# A health check that times out makes `dev up` (and a test session) start the whole stack afresh:
# 3 s was too short for an admin call (a SCRAM login, then metadata) on that loaded machine.
HEALTH_TIMEOUT = 10.0

# librdkafka's own log lines (e.g. "connection refused" while the broker boots) go to this
# logger instead of stderr, where they would interleave with the stack's progress lines.
_client_log = logging.getLogger("eventpipeline_devenv.kafka.client")


def _write_private(path: Path, text: str) -> None:
    jvm.write_private(path, text.encode())


def new_cluster_id() -> str:
    """A random KRaft cluster id (see `cluster_id_from`)."""
    while (cluster_id := cluster_id_from(uuid.uuid4().bytes)) is None:
        pass
    return cluster_id


def cluster_id_from(random_bytes: bytes) -> str | None:
    """A KRaft cluster id: the bytes in Kafka's URL-safe base64 form (22 characters), or None when
    it would start with '-', which the storage tool reads as an option (as Kafka's own
    Uuid.randomUuid avoids): one id in 64 failed `dev up` with "--cluster-id/-t: expected one argument"."""
    cluster_id = base64.urlsafe_b64encode(random_bytes).rstrip(b"=").decode()
    return None if cluster_id.startswith("-") else cluster_id


def format_arguments(cluster_id: str, properties: Path, admin_password: str, anchor_password: str) -> list[str]:
    """The storage tool's arguments: the admin's SCRAM credential and, before any user the
    operator makes, the anchor (see SCRAM_ANCHOR_USER)."""
    return [
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(properties),
        "--add-scram",
        f"SCRAM-SHA-512=[name={ADMIN_USER},password={admin_password}]",
        "--add-scram",
        f"SCRAM-SHA-512=[name={SCRAM_ANCHOR_USER},password={anchor_password}]",
    ]


def new_password() -> str:
    """A random password without commas or brackets, which the storage tool's --add-scram splits on."""
    return secrets.token_urlsafe(24)


def _pem_property(pem: str) -> str:
    """A PEM block as one properties value: Java's Properties turns each `\\n` back into a newline."""
    return pem.strip().replace("\n", "\\n")


def admin_config(exports: Mapping[str, str], *, tls: bool = False) -> dict[str, str | int | float | bool]:
    """confluent-kafka settings for the stack's admin, from the stack's exports (plain or TLS listener)."""
    config: dict[str, str | int | float | bool] = {
        "bootstrap.servers": exports["KAFKA_BOOTSTRAP_SERVERS"],
        "security.protocol": exports["KAFKA_SECURITY_PROTOCOL"],
        "sasl.mechanism": exports["KAFKA_SASL_MECHANISM"],
        "sasl.username": exports["KAFKA_ADMIN_USER"],
        "sasl.password": exports["KAFKA_ADMIN_PASSWORD"],
    }
    if tls:
        config["bootstrap.servers"] = exports["KAFKA_TLS_BOOTSTRAP_SERVERS"]
        config["security.protocol"] = TLS_SECURITY_PROTOCOL
        config["ssl.ca.location"] = exports["KAFKA_CA_FILE"]
    return config


def admin_call_succeeds(exports: Mapping[str, str], timeout: float = HEALTH_TIMEOUT, *, tls: bool = False) -> bool:
    """Whether the admin can authenticate and read the cluster's metadata within `timeout`."""
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - only the stack needs the client

    client = AdminClient(admin_config(exports, tls=tls), logger=_client_log)
    try:
        metadata = client.list_topics(timeout=timeout)
    except Exception:
        return False
    return bool(metadata.brokers)


class KafkaComponent:
    """Kafka `version` from Maven Central, run as one KRaft node with SCRAM and ACLs."""

    name = "kafka"

    def __init__(self, version: str = KAFKA_VERSION) -> None:
        self.version = version

    def libs_dir(self, layout: Layout) -> Path:
        return layout.install_dir(self.name, self.version) / "libs"

    def install(self, layout: Layout, report: Reporter) -> None:
        jvm.ensure_jars(
            self.name,
            self.version,
            layout.install_dir(self.name, self.version),
            properties={"kafka.version": self.version},
            expected_jar_prefix=f"kafka_2.13-{self.version}",
            log_path=layout.log_path("kafka-install"),
            report=report,
        )

    def start(self, layout: Layout, report: Reporter) -> Mapping[str, str]:
        data = layout.data_dir(self.name)
        java = jvm.java(self.name)
        client_port = port_from_env("EVENTPIPELINE_KAFKA_BROKER_PORT")
        controller_port = port_from_env("EVENTPIPELINE_KAFKA_CONTROLLER_PORT")
        tls_port = port_from_env("EVENTPIPELINE_KAFKA_TLS_PORT")
        if len({client_port, controller_port, tls_port}) < 3:
            raise ComponentError(
                self.name, f"ports must differ: client {client_port}, TLS {tls_port}, controller {controller_port}"
            )
        certificates = tls.broker_tls(layout)
        password = new_password()
        _write_private(data / "admin-password", password + "\n")
        log4j_config = data / "log4j2.xml"
        log4j_config.write_text(jvm.resource_text(self.name, "log4j2.xml"))
        properties = data / "server.properties"
        # The file holds the admin's password (the broker's own login): owner-only.
        _write_private(
            properties,
            string.Template(jvm.resource_text(self.name, "server.properties.template")).substitute(
                client_port=client_port,
                tls_port=tls_port,
                controller_port=controller_port,
                tls_certificate_chain=_pem_property(certificates.cert_pem()),
                tls_private_key=_pem_property(certificates.key_pem()),
                tls_ca_certificate=_pem_property(certificates.ca_pem()),
                admin_user=ADMIN_USER,
                admin_password=password,
                log_dir=data / "kafka-logs",
            ),
        )
        java_tail = [f"-Dlog4j2.configurationFile={log4j_config}", "-cp", f"{self.libs_dir(layout)}/*"]
        report.step(self.name, "formatting KRaft storage with the admin's SCRAM credential…")
        self._format_storage(layout, data, [java, *TOOL_JVM_OPTIONS, *java_tail], properties, password)

        report.step(self.name, f"starting the broker on 127.0.0.1:{client_port} (SASL_SSL :{tls_port})…")
        log_path = layout.log_path(self.name)
        record = start_process(layout, self.name, [java, *JVM_OPTIONS, *java_tail, "kafka.Kafka", properties], cwd=data)
        exports = {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{client_port}",
            "KAFKA_ADMIN_USER": ADMIN_USER,
            "KAFKA_ADMIN_PASSWORD": password,
            "KAFKA_SECURITY_PROTOCOL": SECURITY_PROTOCOL,
            "KAFKA_SASL_MECHANISM": SASL_MECHANISM,
            "KAFKA_TLS_BOOTSTRAP_SERVERS": f"127.0.0.1:{tls_port}",
            "KAFKA_CA_FILE": str(certificates.ca_cert),
        }
        wait_until(
            self.name,
            # The port check first: an admin call to a closed port blocks for its whole timeout.
            lambda: port_open(client_port) and admin_call_succeeds(exports) and admin_call_succeeds(exports, tls=True),
            timeout=START_TIMEOUT,
            what="authenticated admin calls (list topics) on the SASL_PLAINTEXT and SASL_SSL listeners to succeed",
            log_path=log_path,
            process=record,
        )
        report.step(
            self.name,
            f"ready on {exports['KAFKA_BOOTSTRAP_SERVERS']} and, TLS, {exports['KAFKA_TLS_BOOTSTRAP_SERVERS']} "
            "(SASL/SCRAM, ACLs enforced)",
        )
        return exports

    def _format_storage(
        self, layout: Layout, data: Path, base_command: list[str], properties: Path, password: str
    ) -> None:
        """Run kafka-storage format, passing the password through a private java @argfile.

        run_logged writes the command line into the log; the argfile keeps the password out
        of it (and out of `ps`).
        """
        argfile = data / "format.args"
        arguments = format_arguments(new_cluster_id(), properties, password, new_password())
        # java expands an @argfile only up to the main class, so the file holds the main class
        # too; one argument a line, quoted so nothing in it is interpreted.
        _write_private(argfile, "".join(f'"{argument}"\n' for argument in arguments))
        try:
            run_logged(
                self.name,
                [*base_command, f"@{argfile}"],
                layout.log_path("kafka-format"),
                cwd=data,
                timeout=120,
            )
        finally:
            with contextlib.suppress(OSError):
                argfile.unlink()

    def healthy(self, exports: Mapping[str, str]) -> bool:
        if "KAFKA_TLS_BOOTSTRAP_SERVERS" not in exports:
            return False  # started by an older stack without the TLS listener: start it again
        host, _, port = exports["KAFKA_BOOTSTRAP_SERVERS"].rpartition(":")
        # A stopped broker answers no at once instead of after the admin call's timeout.
        return port_open(int(port), host) and admin_call_succeeds(exports, timeout=HEALTH_TIMEOUT)
