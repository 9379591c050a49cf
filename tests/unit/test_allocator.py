"""The allocator settings of the controller process (glibc's mallopt / malloc_trim through ctypes)."""

from __future__ import annotations

import threading

import pytest

from eventpipeline import allocator


def test_the_arena_limit_defaults_to_two_and_zero_keeps_glibcs_default() -> None:
    assert allocator.arenas_from({}) == allocator.DEFAULT_ARENAS == 2
    assert allocator.arenas_from({allocator.ARENAS_ENV: "0"}) == 0
    assert allocator.arenas_from({allocator.ARENAS_ENV: "4"}) == 4


def test_a_negative_arena_limit_is_refused() -> None:
    with pytest.raises(ValueError, match=allocator.ARENAS_ENV):
        allocator.arenas_from({allocator.ARENAS_ENV: "-1"})


def test_zero_arenas_changes_nothing() -> None:
    assert allocator.limit_arenas(0) is False


def test_limiting_arenas_and_trimming_run_on_this_c_library() -> None:
    # On glibc (the image and the test machines) both calls reach the C library; elsewhere they
    # are no-ops that say so.
    glibc = allocator._glibc() is not None
    assert allocator.limit_arenas(8) is glibc
    allocator.trim()  # True or False depending on what was free; it must not fail


def test_trimming_stops_when_asked() -> None:
    stop = threading.Event()
    thread = allocator.start_trimming(0.01, stop)
    if allocator._glibc() is None:  # elsewhere no thread is started at all
        assert thread is None
        return
    assert thread is not None
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_no_trimming_thread_when_switched_off() -> None:
    assert allocator.start_trimming(0, threading.Event()) is None
