"""A private PostgreSQL server for the local stack (Airflow's metadata database).

It uses the distribution's server binaries (Debian: /usr/lib/postgresql/<major>/bin), runs
`postgres` in the foreground through `runtime.start_process` so `dev down` stops it, and
listens on 127.0.0.1 only, on its own port, with its unix socket inside its data directory
(so it never meets a system cluster in /var/run/postgresql).

PostgreSQL refuses to run as root: when we are root, initdb and the server run as the
`postgres` OS user, which must be able to reach the data directory. The superuser connects
only through that private socket (trust; the socket directory is mode 0700); TCP clients
authenticate with SCRAM passwords.
"""

from __future__ import annotations

import getpass
import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from eventpipeline_devenv.runtime import (
    ComponentError,
    Layout,
    ProcessRecord,
    Reporter,
    run_logged,
    start_process,
    wait_until,
)

OS_USER = "postgres"
APT_COMMAND = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
# The kernel's limit for a unix socket path is 107 bytes; `.s.PGSQL.<port>` takes up to 15.
_SOCKET_PATH_LIMIT = 90
_SERVER_SETTINGS = {
    # A throwaway test database: durability buys nothing and costs fsyncs on every commit.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "200",
    "log_min_messages": "warning",
    "log_connections": "off",
}


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path))


def find_bin_dir() -> Path | None:
    """The directory holding initdb, postgres and psql: newest Debian major, else PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found and shutil.which("postgres", path=str(Path(found).parent)):
        return Path(found).parent
    return None


def ensure_binaries(component: str, layout: Layout, report: Reporter) -> Path:
    """Return the server binaries' directory, installing Debian's `postgresql` as root if missing."""
    bin_dir = find_bin_dir()
    if bin_dir is not None:
        return bin_dir
    command = " ".join(APT_COMMAND)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ComponentError(
            component,
            f"PostgreSQL server binaries (initdb, postgres) not found; install them, e.g. `sudo {command}`",
        )
    report.step(component, f"PostgreSQL not found: running `{command}`")
    log = layout.log_path(f"{component}-apt")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run_logged(component, APT_COMMAND, log, env=env, timeout=900)
    except ComponentError:
        # A fresh machine may have no package lists yet.
        run_logged(component, ["apt-get", "update"], log, env=env, timeout=600)
        run_logged(component, APT_COMMAND, log, env=env, timeout=900)
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise ComponentError(component, "apt-get installed postgresql but no initdb was found", log)
    return bin_dir


def _as_server_user(command: list[str]) -> list[str]:
    """Prefix a command so it runs as the `postgres` OS user when we are root."""
    return ["runuser", "-u", OS_USER, "--", *command] if os.geteuid() == 0 else command


def _reachable_by_server_user(path: Path) -> bool:
    """Whether the `postgres` OS user can enter `path` (e.g. not under root's 0700 home)."""
    if os.geteuid() != 0:
        return True
    result = subprocess.run(
        ["runuser", "-u", OS_USER, "--", "test", "-x", str(path)],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return result.returncode == 0


@dataclass
class PostgresServer:
    """One PostgreSQL cluster owned by a stack component."""

    component: str
    bin_dir: Path
    port: int
    data_parent: Path
    process: ProcessRecord | None = None

    @cached_property
    def data_dir(self) -> Path:
        """Where the cluster lives: inside the component's data dir when the server user can
        reach it there, otherwise in a short private folder under the temp dir keyed by it."""
        preferred = self.data_parent / "pgdata"
        too_long = len(str(preferred)) > _SOCKET_PATH_LIMIT
        if not too_long and _reachable_by_server_user(self.data_parent):
            return preferred
        key = hashlib.sha256(str(self.data_parent.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"eventpipeline-pg-{getpass.getuser()}-{key}"

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def init(self, layout: Layout) -> Path:
        """Create an empty cluster (removing what a previous run left there)."""
        data_dir = self.data_dir
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(mode=0o700, parents=True)
        if os.geteuid() == 0:
            shutil.chown(data_dir, OS_USER, OS_USER)
        if data_dir.parent != self.data_parent:
            # Leave a pointer where one would look for it.
            pointer = self.data_parent / "pgdata"
            if pointer.is_symlink():
                pointer.unlink()
            pointer.symlink_to(data_dir)
        command = [
            self._bin("initdb"),
            "--pgdata", str(data_dir),
            "--username", OS_USER,
            "--auth-local", "trust",
            "--auth-host", "scram-sha-256",
            "--encoding", "UTF8",
            "--locale", "C",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        run_logged(
            self.component,
            _as_server_user(command),
            layout.log_path(f"{self.component}-initdb"),
            cwd=data_dir,
            timeout=300,
        )
        return data_dir

    def start(self, layout: Layout, timeout: float = 60.0) -> ProcessRecord:
        """Run `postgres` in the foreground (tracked pid) and wait until it accepts queries."""
        data_dir = self.data_dir
        settings = {
            **_SERVER_SETTINGS,
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(data_dir),
        }
        command = [self._bin("postgres"), "-D", str(data_dir)]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        name = f"{self.component}-postgres"
        self.process = start_process(layout, name, _as_server_user(command), cwd=data_dir)
        wait_until(
            self.component,
            lambda: self._psql_ok("SELECT 1"),
            timeout=timeout,
            what=f"PostgreSQL on 127.0.0.1:{self.port}",
            log_path=layout.log_path(name),
            process=self.process,
        )
        return self.process

    def _psql_command(self, sql: str) -> list[str]:
        return _as_server_user([
            self._bin("psql"),
            "--no-psqlrc",
            "--host", str(self.data_dir),
            "--port", str(self.port),
            "--username", OS_USER,
            "--dbname", "postgres",
            "--set", "ON_ERROR_STOP=1",
            "--command", sql,
        ])  # fmt: skip

    def _psql_ok(self, sql: str) -> bool:
        result = subprocess.run(
            self._psql_command(sql), check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return result.returncode == 0

    def create_database(self, layout: Layout, database: str, user: str, password: str) -> str:
        """Create a login role owning a new database; return its SQLAlchemy-style URL (psycopg2)."""
        for name in (database, user):
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise ComponentError(self.component, f"unsafe PostgreSQL identifier {name!r}")
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", password):
            raise ComponentError(self.component, "the database password must be URL- and SQL-safe")
        log = layout.log_path(f"{self.component}-psql")
        run_logged(
            self.component,
            self._psql_command(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'"),
            log,
            timeout=60,
        )
        run_logged(self.component, self._psql_command(f"CREATE DATABASE {database} OWNER {user}"), log, timeout=60)
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"
