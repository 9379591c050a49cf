"""The C allocator of a long-running process with many threads: few malloc arenas, memory handed back.

glibc gives each thread that allocates while another holds an arena an arena of its own, up to
8 per core, and never returns an arena's free pages on its own. The controller runs about thirty
threads (kopf's workers, librdkafka's and the HTTP clients' threads), so after a burst most of its
resident memory is free space kept in those arenas rather than Python objects. Limiting the arenas
before the threads start and trimming after a burst keeps that in bounds. Where the C library is
not glibc (musl, macOS) both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import threading

LOG = logging.getLogger("eventpipeline.allocator")
# glibc's <malloc.h>: mallopt parameter for the most arenas a process may have.
M_ARENA_MAX = -8
ARENAS_ENV = "EVENTPIPELINE_MALLOC_ARENAS"
TRIM_ENV = "EVENTPIPELINE_MALLOC_TRIM_SECONDS"
DEFAULT_ARENAS = 2
DEFAULT_TRIM_SECONDS = 60.0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None  # not glibc
    return libc


def arenas_from(environ: dict[str, str] | os._Environ[str]) -> int:
    """The arena limit asked for: `EVENTPIPELINE_MALLOC_ARENAS` (0 keeps glibc's own default)."""
    value = int(environ.get(ARENAS_ENV, DEFAULT_ARENAS))
    if value < 0:
        raise ValueError(f"{ARENAS_ENV} must be 0 (glibc's default) or a positive number of arenas")
    return value


def limit_arenas(arenas: int) -> bool:
    """At most `arenas` malloc arenas from now on (call before threads start); True if applied."""
    libc = _glibc()
    if arenas == 0 or libc is None:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Hand the free pages of every arena back to the system; True if some memory was released."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


def start_trimming(every: float, stop: threading.Event) -> threading.Thread | None:
    """A daemon thread that trims every `every` seconds until `stop` (None where it cannot help)."""
    if every <= 0 or _glibc() is None:
        return None

    def loop() -> None:
        while not stop.wait(every):
            try:
                trim()
            except Exception:  # never let housekeeping end the process
                LOG.exception("malloc_trim failed")

    thread = threading.Thread(target=loop, name="malloc-trim", daemon=True)
    thread.start()
    return thread


def configure_from_environment(stop: threading.Event) -> None:
    """Apply the arena limit and start trimming as the environment says (defaults: 2 arenas, 60 s)."""
    arenas = arenas_from(os.environ)
    applied = limit_arenas(arenas)
    every = float(os.environ.get(TRIM_ENV, DEFAULT_TRIM_SECONDS))
    start_trimming(every, stop)
    LOG.debug("malloc arenas limited to %s: %s; trimming every %.0fs", arenas, applied, every)
