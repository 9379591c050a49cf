"""The handlers' shared clients: one set per process, however many runs start together."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from eventpipeline.handlers import context


def test_runs_starting_together_share_one_set_of_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []

    def build() -> Any:
        time.sleep(0.05)  # building takes a while: the others arrive meanwhile
        built.append(object())
        return built[-1]

    monkeypatch.setattr(context, "_services", None)
    monkeypatch.setattr(context, "_build_services", build)
    barrier = threading.Barrier(12)
    seen: list[object] = []

    def run() -> None:
        barrier.wait()
        seen.append(context.services())

    threads = [threading.Thread(target=run) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1
    assert seen == built * 12
