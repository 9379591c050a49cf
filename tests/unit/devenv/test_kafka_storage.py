"""The local Kafka's storage is formatted with the admin's SCRAM credential and, beside it, the anchor
user that keeps a restarted broker from losing every SCRAM credential (see `SCRAM_ANCHOR_USER`)."""

from __future__ import annotations

from pathlib import Path

from eventpipeline_devenv import kafka
from eventpipeline_devenv.kafka import ADMIN_USER, SCRAM_ANCHOR_USER


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


def test_the_format_bootstraps_the_admin_and_then_the_anchor() -> None:
    arguments = kafka.format_arguments("cluster", Path("server.properties"), "secret", "other")
    scram = [arguments[i + 1] for i, argument in enumerate(arguments) if argument == "--add-scram"]
    assert scram == [
        f"SCRAM-SHA-512=[name={ADMIN_USER},password=secret]",
        f"SCRAM-SHA-512=[name={SCRAM_ANCHOR_USER},password=other]",
    ]
    assert arguments[arguments.index("-t") + 1] == "cluster"


def test_a_cluster_id_never_starts_like_an_option_of_the_storage_tool() -> None:
    # 0xf8 first gives '-' in the URL-safe base64 alphabet.
    assert kafka.cluster_id_from(b"\xf8" + b"\x00" * 15) is None
    cluster_id = kafka.cluster_id_from(b"\x01" * 16)
    assert cluster_id is not None and not cluster_id.startswith("-") and len(cluster_id) == 22
    assert not kafka.new_cluster_id().startswith("-")
