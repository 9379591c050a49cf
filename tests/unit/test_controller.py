"""What the controller process loads before it has any work: client libraries of brokers that may
not be in use load with their first pipeline."""

from __future__ import annotations

import base64
import logging
import subprocess
import sys

from pydantic import SecretStr

from eventpipeline.adapters.pulsar import mint_token
from eventpipeline.controller import WATCH_HANDLER_SUCCESS, QuietWatchHandler


def test_the_controller_loads_no_token_or_crypto_library_until_a_pulsar_pipeline_needs_one() -> None:
    # PyJWT pulls in `cryptography`: ~11 MB of resident memory for a controller that may only serve Kafka.
    script = (
        "import sys, eventpipeline.controller\n"
        "print(sorted(m for m in ('jwt', 'cryptography', 'pulsar', 'fastavro') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert loaded.stdout.strip() == "[]"


def test_a_token_is_still_minted_with_the_library_loaded_on_first_use() -> None:
    token = mint_token(SecretStr(base64.b64encode(b"k" * 32).decode()), "bench.role", None)
    assert token.get_secret_value().count(".") == 2


def test_kopfs_line_for_each_watch_event_is_dropped_and_its_other_lines_kept() -> None:
    quiet = QuietWatchHandler()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, message, None, None)

    assert not quiet.filter(record(WATCH_HANDLER_SUCCESS))
    assert quiet.filter(record("Handler 'reconcile_on_change' succeeded."))
    assert quiet.filter(record("Handler 'watch_pipelines' failed with an exception. Will ignore."))
