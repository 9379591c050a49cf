"""What the JVM components of the stack (Kafka, Pulsar) share: Java, Maven installs, resources.

Both install the same way: a POM of the project's names the artifacts, Maven copies them and
their runtime dependencies into `<install dir>/libs`, and a marker records the version and the
POM's hash, so a changed POM (an added jar) redoes the install.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from eventpipeline_devenv.runtime import ComponentError, Reporter, run_logged

# Maven 3.8's default dependency plugin (2.8) cannot resolve version ranges: pin a 3.x one.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
INSTALLED_MARKER = ".installed"
INSTALL_TIMEOUT = 1800.0


def resource_text(component: str, name: str) -> str:
    """A file shipped in `eventpipeline_devenv/resources/<component>/`."""
    return (resources.files("eventpipeline_devenv") / "resources" / component / name).read_text()


def java(component: str) -> str:
    """The java launcher: $JAVA_HOME's, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise ComponentError(
            component, "java not found: install a JDK >= 17 (Debian: openjdk-17-jre-headless) or set JAVA_HOME"
        )
    return found


def write_private(path: Path, content: bytes) -> Path:
    """Write a file only its owner can read: it holds a secret."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    return path


def _fingerprint(version: str, pom: str) -> str:
    return f"{version} {hashlib.sha256(pom.encode()).hexdigest()[:16]}\n"


def installed(component: str, version: str, install_dir: Path) -> bool:
    """Whether `libs/` holds a complete install of this version from the current POM."""
    marker = install_dir / INSTALLED_MARKER
    return marker.exists() and marker.read_text() == _fingerprint(version, resource_text(component, "pom.xml"))


def ensure_jars(
    component: str,
    version: str,
    install_dir: Path,
    *,
    properties: Mapping[str, str],
    expected_jar_prefix: str,
    log_path: Path,
    report: Reporter,
) -> None:
    """Install the component's jars unless this version from the current POM is installed."""
    if installed(component, version, install_dir):
        report.step(component, f"{component} {version} already installed in {install_dir}")
        return
    install_jars(
        component,
        version,
        install_dir,
        properties=properties,
        expected_jar_prefix=expected_jar_prefix,
        log_path=log_path,
        report=report,
    )


def install_jars(
    component: str,
    version: str,
    install_dir: Path,
    *,
    properties: Mapping[str, str],
    expected_jar_prefix: str,
    log_path: Path,
    report: Reporter,
) -> list[Path]:
    """Copy the POM's artifacts and their runtime dependencies into `install_dir/libs`.

    Jars land in a scratch folder first and are renamed into place at the end, so a half-copied
    `libs/` never looks usable.
    """
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ComponentError(component, "mvn not found: install Maven >= 3.8 (Debian: apt-get install maven)")
    java(component)
    (install_dir / INSTALLED_MARKER).unlink(missing_ok=True)
    install_dir.mkdir(parents=True, exist_ok=True)
    pom_text = resource_text(component, "pom.xml")
    pom = install_dir / "pom.xml"
    pom.write_text(pom_text)
    partial = install_dir / "libs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    report.step(component, f"downloading {component} {version} and its dependencies from Maven Central…")
    run_logged(
        component,
        [
            mvn,
            "-B",
            "-q",
            "-f",
            pom,
            *(f"-D{key}={value}" for key, value in properties.items()),
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            "-Dmdep.useRepositoryLayout=false",
            f"-DoutputDirectory={partial}",
        ],
        log_path,
        cwd=install_dir,
        timeout=INSTALL_TIMEOUT,
    )
    jars = sorted(partial.glob("*.jar"))
    if not any(jar.name.startswith(expected_jar_prefix) for jar in jars):
        raise ComponentError(component, f"Maven finished but copied no {expected_jar_prefix}*.jar", log_path)
    size_mib = sum(jar.stat().st_size for jar in jars) / 2**20
    libs = install_dir / "libs"
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    (install_dir / INSTALLED_MARKER).write_text(_fingerprint(version, pom_text))
    report.step(component, f"installed {len(jars)} jars ({size_mib:.0f} MiB) in {libs}")
    return [libs / jar.name for jar in jars]
