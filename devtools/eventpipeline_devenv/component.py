"""The contract each piece of the local stack (kube, kafka, pulsar, airflow) fulfils."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from eventpipeline_devenv.runtime import Layout, Reporter


class Component(Protocol):
    """One part of the local stack.

    `install` is idempotent and caches under `layout.install_dir(name, version)`;
    `start` launches the processes with `runtime.start_process`, waits until they answer,
    and returns the `export` lines (`dev env`) that tell clients how to reach it. `healthy`
    re-checks a running stack from those exports alone.
    """

    name: str
    version: str

    def install(self, layout: Layout, report: Reporter) -> None: ...

    def start(self, layout: Layout, report: Reporter) -> Mapping[str, str]: ...

    def healthy(self, exports: Mapping[str, str]) -> bool: ...
