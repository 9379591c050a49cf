"""The local Kafka's storage is formatted with the admin's SCRAM credential and, beside it, the anchor
user that keeps a restarted broker from losing every SCRAM credential (see `SCRAM_ANCHOR_USER`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from eventpipeline_devenv import kafka
from eventpipeline_devenv.kafka import ADMIN_USER, SCRAM_ANCHOR_USER, KafkaComponent
from eventpipeline_devenv.runtime import Layout


def java_string_hash(text: str) -> int:
    """Java's String.hashCode() as an unsigned 32-bit value (UTF-16 code units; ASCII here)."""
    value = 0
    for character in text:
        value = (value * 31 + ord(character)) & 0xFFFFFFFF
    return value


def test_the_anchor_lies_in_the_first_bucket_of_every_hash_table() -> None:
    assert SCRAM_ANCHOR_USER.isascii()
    assert java_string_hash(SCRAM_ANCHOR_USER) == 0
    assert java_string_hash(ADMIN_USER) != 0  # the check above is not vacuous


def test_the_format_bootstraps_the_admin_and_the_anchor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def run_logged(_component: str, command: Sequence[Any], *_args: Any, **_kwargs: Any) -> None:
        argfile = Path(str(command[-1]).removeprefix("@"))
        seen.extend(line.strip('"') for line in argfile.read_text().splitlines())

    monkeypatch.setattr(kafka, "run_logged", run_logged)
    layout = Layout(cache_dir=tmp_path / "cache", state_dir=tmp_path / "state")
    KafkaComponent()._format_storage(layout, tmp_path, ["java"], tmp_path / "server.properties", "secret")

    scram = [seen[i + 1] for i, argument in enumerate(seen) if argument == "--add-scram"]
    assert scram[0] == f"SCRAM-SHA-512=[name={ADMIN_USER},password=secret]"
    assert scram[1].startswith(f"SCRAM-SHA-512=[name={SCRAM_ANCHOR_USER},password=")
    assert "secret" not in scram[1]
    assert not (tmp_path / "format.args").exists()  # the passwords do not stay on disk


def test_a_cluster_id_never_starts_like_an_option_of_the_storage_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    # uuid4 first yields bytes whose base64 starts with '-' (0xf8 -> '-' in the URL-safe alphabet).
    drawn = iter([kafka.uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), kafka.uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(drawn))
    cluster_id = kafka.new_cluster_id()
    assert not cluster_id.startswith("-") and len(cluster_id) == 22
