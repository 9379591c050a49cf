"""Session fixtures over the real local stack (see eventpipeline.devenv).

The stack is started once per session, or reused when `eventpipeline dev up` already runs
one in the same state dir. It is never skipped: if a component cannot start, every
integration test errors with that component's log tail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventpipeline.devenv import stack as devstack
from eventpipeline.devenv.runtime import Layout, Reporter


@pytest.fixture(scope="session")
def stack() -> Iterator[devstack.StackInfo]:
    layout = Layout.from_environment()
    already_running = devstack.running_stack(layout)
    info = devstack.up(layout, Reporter())
    yield info
    if already_running is None:
        devstack.down(layout, Reporter())
