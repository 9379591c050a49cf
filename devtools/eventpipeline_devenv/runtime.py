"""Shared machinery of the local stack: directories, progress output, processes, health waits.

Every component module (kube, kafka, pulsar, airflow) uses these helpers so that install
progress, log files, pid bookkeeping and failure messages look the same for all of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

LOG_TAIL_LINES = 40


class ComponentError(RuntimeError):
    """A component could not be installed or started; the message says what and shows its log."""

    def __init__(self, component: str, message: str, log_path: Path | None = None) -> None:
        self.component = component
        self.log_path = log_path
        text = f"{component}: {message}"
        if log_path is not None:
            text += f"\n--- last lines of {log_path} ---\n{tail(log_path)}"
        super().__init__(text)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last lines of a log file, or a note that it does not exist."""
    if not path.exists():
        return "(no log written)"
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64 * 1024))
        data = handle.read().decode("utf-8", errors="replace")
    return "\n".join(data.splitlines()[-lines:])


@dataclass(frozen=True)
class Layout:
    """Where the stack keeps its files.

    `cache_dir` holds installs keyed by version and survives `dev down`;
    `state_dir` holds one running stack's data, logs, pids and `stack.json`.
    """

    cache_dir: Path
    state_dir: Path

    @classmethod
    def from_environment(cls) -> Layout:
        home = Path.home()
        cache = os.environ.get("EVENTPIPELINE_CACHE_DIR") or str(home / ".cache" / "eventpipeline")
        state = os.environ.get("EVENTPIPELINE_STATE_DIR") or str(home / ".local" / "state" / "eventpipeline" / "stack")
        return cls(cache_dir=Path(cache), state_dir=Path(state))

    def install_dir(self, component: str, version: str) -> Path:
        """Cache folder for one component at one version, e.g. ~/.cache/eventpipeline/kafka/4.1.1."""
        return self.cache_dir / component / version

    def data_dir(self, component: str) -> Path:
        path = self.state_dir / component
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log_path(self, process: str) -> Path:
        path = self.state_dir / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path / f"{process}.log"

    @property
    def pid_dir(self) -> Path:
        path = self.state_dir / "pids"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def stack_file(self) -> Path:
        return self.state_dir / "stack.json"


class Reporter:
    """Prints what the stack is doing, one line per step, with the time since start."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._started = time.monotonic()

    def step(self, component: str, message: str) -> None:
        elapsed = time.monotonic() - self._started
        print(f"[{elapsed:6.1f}s] {component:<8} {message}", file=self._stream, flush=True)


def free_port() -> int:
    """Ask the kernel for a free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_from_env(variable: str) -> int:
    """A port from an environment variable when set, otherwise a free one."""
    value = os.environ.get(variable)
    return int(value) if value else free_port()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def run_logged(
    component: str,
    command: Sequence[str | os.PathLike[str]],
    log_path: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> None:
    """Run a command to completion, appending its output to a log; raise ComponentError on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(map(str, command))}\n".encode())
        log.flush()
        try:
            result = subprocess.run(
                [str(part) for part in command],
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ComponentError(component, f"{command[0]} did not finish in {timeout}s", log_path) from None
    if result.returncode != 0:
        raise ComponentError(component, f"{command[0]} exited with {result.returncode}", log_path)


@dataclass
class ProcessRecord:
    """What `dev down` needs to stop one process that `dev up` started, and only that one."""

    name: str
    pid: int
    start_time: str
    log_path: str
    command: list[str] = field(default_factory=list)


def _proc_start_time(pid: int) -> str | None:
    """The kernel's start time of a pid; guards against killing a recycled pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def start_process(
    layout: Layout,
    name: str,
    command: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ProcessRecord:
    """Start a long-running process in its own process group, logging to the stack's log dir."""
    log_path = layout.log_path(name)
    args = [str(part) for part in command]
    with log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(args)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    record = ProcessRecord(
        name=name,
        pid=process.pid,
        start_time=_proc_start_time(process.pid) or "",
        log_path=str(log_path),
        command=args,
    )
    (layout.pid_dir / f"{name}.json").write_text(json.dumps(record.__dict__))
    return record


def recorded_processes(layout: Layout) -> list[ProcessRecord]:
    """Processes started by `dev up` in this state dir, in start order."""
    if not layout.state_dir.exists() or not (layout.state_dir / "pids").exists():
        return []
    records = [ProcessRecord(**json.loads(path.read_text())) for path in layout.pid_dir.glob("*.json")]
    return sorted(records, key=lambda record: int(record.start_time or 0))


def is_running(record: ProcessRecord) -> bool:
    start = _proc_start_time(record.pid)
    if start is None or start != record.start_time:
        return False
    state = Path(f"/proc/{record.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def stop_process(layout: Layout, record: ProcessRecord, grace_seconds: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after the grace period."""
    if is_running(record):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while is_running(record) and time.monotonic() < deadline:
            _reap(record.pid)
            time.sleep(0.2)
    # The group may hold children (e.g. Airflow's worker processes) even when the leader exited.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(record.pid, signal.SIGKILL)
    _reap(record.pid)
    (layout.pid_dir / f"{record.name}.json").unlink(missing_ok=True)


def restart_process(layout: Layout, name: str, *, sig: int = signal.SIGTERM) -> ProcessRecord:
    """Stop a recorded process (`sig` to its group: SIGTERM for a clean stop, SIGKILL for a crash)
    and start it again with the command, working directory and environment it ran with.

    For fault drills on the local stack: the component keeps its data dir, ports and secrets."""
    record = next(r for r in recorded_processes(layout) if r.name == name)
    environ = Path(f"/proc/{record.pid}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
    cwd = Path(os.readlink(f"/proc/{record.pid}/cwd"))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, sig)
    stop_process(layout, record)
    return start_process(layout, name, record.command, cwd=cwd, env=env)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(
    component: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    log_path: Path | None = None,
    process: ProcessRecord | None = None,
    interval: float = 0.5,
) -> None:
    """Poll `check` until it is true; fail early if `process` died, with the tail of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not is_running(process):
            raise ComponentError(component, f"process {process.name} exited while waiting for {what}", log_path)
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(interval)
    raise ComponentError(component, f"timed out after {timeout:.0f}s waiting for {what}", log_path)
