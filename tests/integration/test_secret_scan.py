"""The secret scan itself (no stack needed): it finds a planted value and never shows it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, cast

from tests.integration.secret_scan import SecretScan, process_logs
from tests.integration.support import Kube

PASSWORD = "issued-password-" + "x" * 27
ADMIN = "the-admin-password"


def planted_scan() -> SecretScan:
    scan = SecretScan(cast(Kube, None), {"KAFKA_ADMIN_PASSWORD": ADMIN})
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    scan.take_secret(
        {"metadata": {"namespace": "shop", "name": "orders.app.credentials"}, "data": {"password": encoded}}
    )
    return scan


def test_a_planted_value_is_found_in_events_status_annotations_and_logs_and_never_shown(tmp_path: Path) -> None:
    scan = planted_scan()
    involved: dict[str, Any] = {"kind": "EventPipeline", "namespace": "shop", "name": "orders"}
    scan.take_event(
        {
            "metadata": {"namespace": "shop", "name": "e1"},
            "reason": "Oops",
            "message": f"pw {PASSWORD}",
            "involvedObject": involved,
        }
    )
    scan.take_object(
        {"kind": "EventPipeline", "metadata": {"namespace": "shop", "name": "orders"}, "status": {"error": ADMIN}}
    )
    scan.take_object(
        {"kind": "Broker", "metadata": {"namespace": "shop", "name": "b", "annotations": {"note": PASSWORD}}}
    )
    (tmp_path / "operator-under-test.log").write_text(f"start\nconnecting with {ADMIN}\n")
    (tmp_path / "kafka.log").write_text(f"{PASSWORD}\n")  # not a log of ours: not scanned

    leaks = scan.leaks(process_logs(tmp_path))

    assert sorted(leaks) == [
        "Secret shop/orders.app.credentials key password appears in Event shop/e1 (Oops on EventPipeline shop/orders)",
        "Secret shop/orders.app.credentials key password appears in the annotations of Broker shop/b",
        f"the stack's KAFKA_ADMIN_PASSWORD appears in the log {tmp_path / 'operator-under-test.log'} at line 2",
        "the stack's KAFKA_ADMIN_PASSWORD appears in the status of EventPipeline shop/orders",
    ]
    assert not any(PASSWORD in leak or ADMIN in leak for leak in leaks)


def test_texts_without_any_value_are_no_finding(tmp_path: Path) -> None:
    scan = planted_scan()
    scan.take_event({"metadata": {"namespace": "shop", "name": "e1"}, "reason": "Rotated", "message": "generation 2"})
    (tmp_path / "listener-under-test-0.log").write_text("consumed 10 messages\n")
    assert scan.leaks(process_logs(tmp_path)) == []
