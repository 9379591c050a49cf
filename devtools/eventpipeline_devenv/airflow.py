"""Airflow 3 for the local stack: api-server, scheduler, dag-processor and triggerer on PostgreSQL.

Airflow lives in its own virtual environment (cached per version), installed from a pinned
lock in `resources/airflow/requirements.lock`. Its metadata database is a private PostgreSQL
server: on SQLite, Airflow 3 locked up ("database is locked") at a few DAG runs per second.

All configuration is passed as `AIRFLOW__*` environment variables, the same for every
process, so no airflow.cfg needs to be written or kept in sync.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import importlib.resources
import importlib.util
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from eventpipeline_devenv import postgres
from eventpipeline_devenv.runtime import (
    ComponentError,
    Layout,
    ProcessRecord,
    Reporter,
    is_running,
    port_from_env,
    run_logged,
    start_process,
)

AIRFLOW_VERSION = "3.3.2"
ADMIN_USER = "admin"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
# Each one is started as its own process, `airflow <name> <arguments>`, in this order. The
# scheduler's and triggerer's log servers bind every interface (host "" in Airflow's code);
# the api-server reads task logs from the shared AIRFLOW_HOME/logs instead, so skip them.
SERVICES: dict[str, tuple[str, ...]] = {
    "api-server": (),
    "scheduler": ("--skip-serve-logs",),
    "dag-processor": (),
    "triggerer": ("--skip-serve-logs",),
}
HEALTH_PATH = "/api/v2/monitor/health"
# Database connections per Airflow process: more than the api-server's 40 request threads, so
# concurrent requests never wait for one another's connections (PostgreSQL here allows 200).
API_DB_POOL_SIZE = 16
API_DB_POOL_OVERFLOW = 48
PROVIDER_DISTRIBUTION = "airflow-provider-eventpipeline"
# What a build leaves in the provider's folder: not part of its content.
_BUILD_LEFTOVERS = ("__pycache__", ".egg-info", "build", "dist", ".mypy_cache", ".ruff_cache")


def _lock_file() -> Path:
    resources = importlib.resources.files("eventpipeline_devenv") / "resources"
    return Path(str(resources / "airflow" / "requirements.lock"))


@functools.cache
def _lock_digest() -> str:
    """The lock's digest, read once per process: a lock edited between install and start (separate
    component instances) cannot send the two to different environments."""
    return hashlib.sha256(_lock_file().read_bytes()).hexdigest()


def provider_dir() -> Path | None:
    """The provider's folder in this repository (the dev package is installed editable from it)."""
    folder = Path(__file__).resolve().parents[2] / PROVIDER_DISTRIBUTION
    return folder if (folder / "pyproject.toml").exists() else None


def provider_digest(folder: Path) -> str:
    """A digest of the provider's files (names and contents): a change reinstalls it."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.endswith(_BUILD_LEFTOVERS) for part in relative.parts):
            continue
        digest.update(str(relative).encode() + b"\x00" + path.read_bytes() + b"\x00")
    return digest.hexdigest()


def _uv_command() -> list[str] | None:
    """uv from PATH, beside the running interpreter, or as its Python module; None when absent."""
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if found:
        return [found]
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    return None


def _port(what: str) -> str:
    return str(port_from_env(f"EVENTPIPELINE_AIRFLOW_{what}_PORT"))


def _sqlalchemy_url(db_url: str) -> str:
    """Airflow's SQLAlchemy URL names the driver: psycopg2, which the lock pins."""
    return db_url.replace("postgresql://", "postgresql+psycopg2://", 1)


def _write_private(path: Path, text: str) -> None:
    """Write a secret file readable by its owner only (created 0600, never world-readable)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _health_ok(api_url: str, timeout: float = 2.5) -> bool:
    """True when /api/v2/monitor/health reports every Airflow component healthy."""
    response = httpx.get(f"{api_url}{HEALTH_PATH}", timeout=timeout)
    if response.status_code != 200:
        return False
    body = response.json()
    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all((body.get(part) or {}).get("status") == "healthy" for part in parts)


def _token(api_url: str, username: str, password: str, timeout: float = 5.0) -> str | None:
    response = httpx.post(f"{api_url}/auth/token", json={"username": username, "password": password}, timeout=timeout)
    if response.status_code not in (200, 201):
        return None
    token = response.json().get("access_token")
    return str(token) if token else None


class AirflowComponent:
    """Airflow 3 (LocalExecutor, SimpleAuthManager) and its PostgreSQL, as local processes."""

    name = "airflow"
    version = AIRFLOW_VERSION

    def __init__(self, parallelism: int = 4) -> None:
        # The LocalExecutor pre-forks `parallelism` workers: 32 by default cost about 1 GiB.
        self.parallelism = parallelism

    # --- install -------------------------------------------------------------------------

    def _venv(self, layout: Layout) -> Path:
        # One environment per lock: a changed lock makes a new one beside the old, so stacks still
        # running from the old environment (other state dirs share this cache) are not pulled from under.
        return layout.install_dir(self.name, self.version) / f"venv-{_lock_digest()[:12]}"

    def python(self, layout: Layout) -> Path:
        """The interpreter of the Airflow environment (the provider's type check runs with it)."""
        return self._venv(layout) / "bin" / "python"

    def install(self, layout: Layout, report: Reporter) -> None:
        postgres.ensure_binaries(self.name, layout, report)
        install_dir = layout.install_dir(self.name, self.version)
        install_dir.mkdir(parents=True, exist_ok=True)
        # Several stacks (state dirs) share this cache: one installer at a time.
        with (install_dir / ".install.lock").open("w") as lock_handle:
            fcntl.flock(lock_handle, fcntl.LOCK_EX)
            self._install_airflow(layout, report)
            self._install_provider(layout, report)

    def _install_airflow(self, layout: Layout, report: Reporter) -> None:
        venv = self._venv(layout)
        marker = venv / ".installed"
        # The venv's python is a symlink to the interpreter that made it: gone if that was removed.
        if marker.exists() and self._airflow_bin(layout).exists() and self.python(layout).exists():
            report.step(self.name, f"Airflow {self.version} already installed in {venv}")
            return
        shutil.rmtree(venv, ignore_errors=True)
        log = layout.log_path("airflow-install")
        uv = _uv_command()
        report.step(self.name, f"creating virtual environment {venv}")
        venv_command = [sys.executable, "-m", "venv", str(venv)]
        run_logged(self.name, venv_command + (["--without-pip"] if uv else []), log, timeout=300)
        report.step(
            self.name,
            f"installing apache-airflow {self.version} from the lock with {'uv' if uv else 'pip'} (about 300 MB)…",
        )
        if uv:
            command = [*uv, "pip", "install", "--python", str(self.python(layout)), "--no-deps", "--compile-bytecode"]
            command += ["-r", str(_lock_file())]
        else:
            command = [str(self.python(layout)), "-m", "pip", "install", "--no-deps", "-r", str(_lock_file())]
        run_logged(self.name, command, log, timeout=1800)
        run_logged(
            self.name,
            [str(self._airflow_bin(layout)), "version"],
            log,
            env=self._clean_env({"AIRFLOW_HOME": str(venv / "probe-home")}),
            timeout=300,
        )
        shutil.rmtree(venv / "probe-home", ignore_errors=True)
        marker.write_text("installed\n")
        report.step(self.name, f"Airflow {self.version} installed")

    def _install_provider(self, layout: Layout, report: Reporter) -> None:
        """The repository's Airflow provider, reinstalled whenever one of its files changed."""
        source = provider_dir()
        if source is None:
            report.step(self.name, "no airflow-provider-eventpipeline folder beside the dev package: provider skipped")
            return
        marker = self._venv(layout) / ".provider"
        digest = provider_digest(source)
        if marker.exists() and marker.read_text().strip() == digest:
            report.step(self.name, f"provider {PROVIDER_DISTRIBUTION} up to date")
            return
        report.step(self.name, f"installing provider {PROVIDER_DISTRIBUTION} from {source}")
        python = str(self.python(layout))
        uv = _uv_command()
        if uv:
            command = [*uv, "pip", "install", "--python", python, "--no-deps", "--reinstall-package",
                       PROVIDER_DISTRIBUTION, str(source)]  # fmt: skip
        else:
            command = [python, "-m", "pip", "install", "--no-deps", "--force-reinstall", str(source)]
        run_logged(self.name, command, layout.log_path("airflow-install"), timeout=600)
        marker.write_text(digest + "\n")

    def _airflow_bin(self, layout: Layout) -> Path:
        return self._venv(layout) / "bin" / "airflow"

    @staticmethod
    def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
        """The caller's environment without Airflow settings (they would override ours)."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("AIRFLOW") and key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        }
        env.update(extra)
        return env

    # --- start ---------------------------------------------------------------------------

    def start(self, layout: Layout, report: Reporter) -> Mapping[str, str]:
        data = layout.data_dir(self.name)
        bin_dir = postgres.find_bin_dir()
        if bin_dir is None:
            raise ComponentError(self.name, "PostgreSQL binaries disappeared since install")
        database = postgres.PostgresServer(
            self.name, bin_dir, port_from_env("EVENTPIPELINE_AIRFLOW_POSTGRES_PORT"), data
        )
        report.step(self.name, f"initialising PostgreSQL ({bin_dir.parent.name}) in {database.data_dir}")
        database.init(layout)
        database_process = database.start(layout)
        db_password = secrets.token_urlsafe(24)
        db_url = database.create_database(layout, "airflow", "airflow", db_password)
        report.step(self.name, f"PostgreSQL ready on 127.0.0.1:{database.port}")

        password = secrets.token_urlsafe(18)
        api_port = port_from_env("EVENTPIPELINE_AIRFLOW_API_PORT")
        api_url = f"http://127.0.0.1:{api_port}"
        env = self._airflow_env(layout, data, api_port, db_url, password)
        _write_private(data / "secrets.json", json.dumps({
            "admin_password": password,
            "database_url": db_url,
            "jwt_secret": env["AIRFLOW__API_AUTH__JWT_SECRET"],
            "api_secret_key": env["AIRFLOW__API__SECRET_KEY"],
            "fernet_key": env["AIRFLOW__CORE__FERNET_KEY"],
        }, indent=2))  # fmt: skip

        report.step(self.name, "migrating the metadata database (airflow db migrate)")
        run_logged(
            self.name,
            [self._airflow_bin(layout), "db", "migrate"],
            layout.log_path("airflow-db-migrate"),
            env=env,
            cwd=data,
            timeout=600,
        )
        report.step(self.name, f"starting {', '.join(SERVICES)}")
        airflow = str(self._airflow_bin(layout))
        processes = {
            service: start_process(layout, f"airflow-{service}", [airflow, service, *args], env=env, cwd=data)
            for service, args in SERVICES.items()
        }
        processes["postgres"] = database_process
        self._wait(layout, report, processes, api_url, password)
        return {
            "AIRFLOW_API_URL": api_url,
            "AIRFLOW_USERNAME": ADMIN_USER,
            "AIRFLOW_PASSWORD": password,
            "AIRFLOW_DAGS_FOLDER": env["AIRFLOW__CORE__DAGS_FOLDER"],
            "AIRFLOW_HOME": env["AIRFLOW_HOME"],
            "AIRFLOW_DATABASE_URL": db_url,
        }

    def _airflow_env(self, layout: Layout, data: Path, api_port: int, db_url: str, password: str) -> dict[str, str]:
        home = data / "home"
        dags = data / "dags"
        home.mkdir(exist_ok=True)
        dags.mkdir(exist_ok=True)
        passwords_file = data / "simple_auth_manager_passwords.json"
        # SimpleAuthManager invents a password only for users missing from this file.
        _write_private(passwords_file, json.dumps({ADMIN_USER: password}))
        api_url = f"http://127.0.0.1:{api_port}"
        fernet_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        venv_bin = str(self._venv(layout) / "bin")
        return self._clean_env({
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": fernet_key,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _sqlalchemy_url(db_url),
            # With the default pool (5 + 10 overflow) 16-24 concurrent run requests exhausted it and
            # the api-server answered nothing for minutes (bench/chaos/RESULTS.md, fourth round).
            "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": str(API_DB_POOL_SIZE),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": str(API_DB_POOL_OVERFLOW),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            # New DAG files are looked for every 300 s by default; tests want seconds.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            # A task talks to the api-server (execution API) throughout; at the default 5 s a busy
            # 2-core machine timed out those calls and failed tasks before they ran a line.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            # No log server runs (--skip-serve-logs); should one start anyway, it must not take the
            # fixed defaults 8793/8794 that another stack or a real Airflow may hold.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": _port("WORKER_LOG"),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": _port("TRIGGER_LOG"),
        })  # fmt: skip

    def _wait(
        self,
        layout: Layout,
        report: Reporter,
        processes: Mapping[str, ProcessRecord],
        api_url: str,
        password: str,
    ) -> None:
        """Wait for health and a working login, failing fast with the log of a process that died."""
        report.step(self.name, f"waiting for {api_url}{HEALTH_PATH} to report all components healthy")
        self._poll(layout, processes, lambda: _health_ok(api_url), "all Airflow components healthy", 240)
        self._poll(
            layout,
            processes,
            lambda: _token(api_url, ADMIN_USER, password) is not None,
            "an admin token from POST /auth/token",
            60,
        )

    def _poll(
        self,
        layout: Layout,
        processes: Mapping[str, ProcessRecord],
        check: Callable[[], bool],
        what: str,
        timeout: float,
    ) -> None:
        # Like runtime.wait_until, but watching several processes at once.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in processes.values():
                if not is_running(record):
                    raise ComponentError(
                        self.name, f"{record.name} exited while waiting for {what}", Path(record.log_path)
                    )
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if check():
                    return
            time.sleep(1.0)
        raise ComponentError(
            self.name,
            f"timed out after {timeout:.0f}s waiting for {what}",
            layout.log_path("airflow-api-server"),
        )

    # --- health --------------------------------------------------------------------------

    def healthy(self, exports: Mapping[str, str]) -> bool:
        api_url = exports.get("AIRFLOW_API_URL")
        if not api_url:
            return False
        try:
            return _health_ok(api_url)
        except (httpx.HTTPError, ValueError):
            return False


def main() -> None:
    """`python -m eventpipeline_devenv.airflow`: install Airflow and the provider if needed, print its interpreter.

    `make typecheck` checks the provider with this interpreter, against Airflow's own types.
    """
    component = AirflowComponent()
    layout = Layout.from_environment()
    component.install(layout, Reporter())
    print(component.python(layout))


if __name__ == "__main__":
    main()
