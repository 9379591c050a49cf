"""The container image, built from the Dockerfile without a Docker engine.

buildah (Debian's package, `make image-tools`) builds the Dockerfile with chroot isolation. No
image registry is reachable here, so the `python:3.11-slim` base is replaced by one made on
the spot: a Debian bookworm root filesystem from debootstrap with Python 3.11 (the version of
the slim image), passed as the PYTHON_IMAGE build argument and cached under
~/.cache/eventpipeline/image/. The image is then run, as its non-root user, with chroot
isolation too: this machine's cgroup setup refuses OCI runtimes (crun), so seccomp, capability
dropping and a read-only root mount are not exercised here; what is checked is that the
process runs as uid 65532 and finds nothing it could write outside /tmp.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
BASE_IMAGE = "localhost/eventpipeline-python-base:3.11-bookworm"
IMAGE = "localhost/eventpipeline-operator:test"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# The interpreter and venv support that python:3.11-slim-bookworm has, from Debian itself.
BASE_PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates"
# CA certificates this machine trusts (e.g. a TLS-inspecting egress proxy) go into the base
# too, so that pip inside the build reaches PyPI exactly as pip on the machine does.
LOCAL_CAS = Path("/usr/local/share/ca-certificates")


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: run `make image-tools` (Debian packages buildah and debootstrap)"
    return path


def _run(command: Sequence[str], *, timeout: float = 600) -> str:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def _cache_dir() -> Path:
    root = Path(os.environ.get("EVENTPIPELINE_CACHE_DIR", Path.home() / ".cache" / "eventpipeline"))
    return root / "image"


def _exists(buildah: str, image: str) -> bool:
    found = subprocess.run([buildah, "inspect", "--type", "image", image], capture_output=True, check=False)
    return found.returncode == 0


def _base_image(buildah: str) -> None:
    """Make the local stand-in of python:3.11-slim-bookworm once; later runs reuse it."""
    if _exists(buildah, BASE_IMAGE):
        return
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    rootfs, archive = cache / "rootfs", cache / "rootfs.tar"
    if not archive.exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        _run(
            [
                _tool("debootstrap"),
                "--variant=minbase",
                f"--include={BASE_PACKAGES}",
                "bookworm",
                str(rootfs),
                DEBIAN_MIRROR,
            ]
        )
        for certificate in LOCAL_CAS.glob("*.crt"):
            shutil.copy(certificate, rootfs / "usr/local/share/ca-certificates" / certificate.name)
        _run(["chroot", str(rootfs), "update-ca-certificates"])
        for leftover in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            leftover.unlink()
        _run(["tar", "-C", str(rootfs), "-cf", str(archive), "."])
        shutil.rmtree(rootfs)
    container = _run([buildah, "from", "scratch"]).strip()
    try:
        _run([buildah, "add", container, str(archive), "/"])
        _run([buildah, "config", "--env", "LANG=C.UTF-8", container])
        _run([buildah, "commit", "--quiet", container, BASE_IMAGE])
    finally:
        subprocess.run([buildah, "rm", container], capture_output=True, check=False)


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    buildah = _tool("buildah")
    _base_image(buildah)
    _run(
        [
            buildah,
            "bud",
            "--isolation",
            "chroot",
            "--network",
            "host",
            "--layers",
            "--build-arg",
            f"PYTHON_IMAGE={BASE_IMAGE}",
            "--tag",
            IMAGE,
            str(REPO),
        ],
        timeout=900,
    )
    container = _run([buildah, "from", IMAGE]).strip()
    yield container
    subprocess.run([buildah, "rm", container], capture_output=True, check=False)


def _in_image(container: str, *command: str) -> str:
    return _run(["buildah", "run", "--isolation", "chroot", "--user", "65532:65532", container, "--", *command])


def test_image_runs_the_cli_as_its_non_root_user(image: str) -> None:
    assert _in_image(image, "eventpipeline", "--version").strip() == "eventpipeline 0.1.0"
    assert _in_image(image, "id", "-u").strip() == "65532"


def test_image_holds_controller_and_listener_with_their_clients(image: str) -> None:
    modules = "kopf, confluent_kafka, pulsar, httpx, eventpipeline.handlers, eventpipeline.listener.service"
    assert _in_image(image, "python", "-c", f"import {modules}; print('ok')").strip() == "ok"


def test_image_holds_no_development_stack(image: str) -> None:
    """The local stack (devtools/eventpipeline_devenv) is a development package: not shipped."""
    probe = (
        "import importlib.util, pathlib, eventpipeline; "
        "print(importlib.util.find_spec('eventpipeline_devenv') is None, "
        "sorted(p.name for p in pathlib.Path(eventpipeline.__file__).parent.iterdir() if p.is_dir()))"
    )
    missing, folders = _in_image(image, "python", "-c", probe).strip().split(" ", 1)
    assert missing == "True"
    assert "devenv" not in folders and "resources" not in folders, folders
    refused = subprocess.run(
        ["buildah", "run", "--isolation", "chroot", "--user", "65532:65532", image, "--", "eventpipeline", "dev", "up"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2
    assert "development package eventpipeline-devenv" in refused.stderr


def test_nothing_outside_tmp_is_writable_for_the_process(image: str) -> None:
    """Read-only root filesystem friendly: the process can write nowhere but its emptyDir (/tmp)."""
    # find reports the directories it may not enter (e.g. /root): proof enough they are closed.
    writable = _in_image(image, "sh", "-c", "find / -xdev -writable -not -type l 2>/dev/null; true")
    # /tmp (the emptyDir) and the sticky scratch directories every Debian base has.
    scratch = ("/tmp", "/var/tmp", "/run/lock", "/dev", "/proc")  # noqa: S108
    outside = [path for path in writable.split() if not path.startswith(scratch)]
    assert outside == [], outside


def test_image_config_has_user_entrypoint_and_oci_labels() -> None:
    config = json.loads(_run([_tool("buildah"), "inspect", "--type", "image", IMAGE]))["OCIv1"]["config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["eventpipeline"]
    assert config["Labels"]["org.opencontainers.image.version"] == "0.1.0"
    assert config["Labels"]["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert "9102/tcp" in config["ExposedPorts"]
