"""What the listener scenarios need to know about each broker, so one test covers Kafka and Pulsar."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration.listener.brokers import (
    kafka_committed,
    kafka_delete_scram_user,
    kafka_end_offsets,
    kafka_produce,
    pulsar_produce,
)


@dataclass(frozen=True)
class BrokerCase:
    name: str
    cluster_broker: str  # the local stack's ClusterBroker
    produce: Callable[[Mapping[str, str], str, Sequence[str]], None]  # (producer Secret, topic, values)
    broken_access_error: str  # what status.listener.error says once `break_listener_access` did its work

    def assert_position(self, run_id: str, conf: Mapping[str, Any], topic: str) -> None:
        """The run id is derived from the message's position, and the conf carries that position."""
        # ep__<topic>__<incarnation: a hash of the brokerRef and the topic's identity>__<position>
        if self.name == "kafka":
            assert conf["partition"] in (0, 1) and isinstance(conf["offset"], int), conf
            assert re.fullmatch(
                rf"ep__{re.escape(topic)}__[0-9a-f]{{10}}__{conf['partition']}__{conf['offset']}", run_id
            )
        else:
            assert conf["messageId"].count(":") == 3, conf
            short = re.escape(topic.rsplit("/", 1)[-1])
            assert re.fullmatch(rf"ep__{short}__[0-9a-f]{{10}}__{re.escape(conf['messageId'])}", run_id)

    def committed_everything(self, exports: Mapping[str, str], group: str, topic: str) -> bool:
        """Kafka: the group committed up to the end of every partition. Pulsar acknowledges each
        message once it has its run; the listener's role may not read the backlog, so nothing to ask."""
        if self.name == "kafka":
            return kafka_committed(exports, group, topic, 2) == kafka_end_offsets(exports, topic, 2)
        return True

    def break_listener_access(self, exports: Mapping[str, str], status: Mapping[str, Any]) -> None:
        """Behind the operator's back: Kafka: delete the listener's SCRAM credential; Pulsar: revoke
        its role's grant on the topic. The operator repairs either at its next drift check."""
        listener = next(p["username"] for p in status["principals"] if p["name"] == "listener")
        if self.name == "kafka":
            kafka_delete_scram_user(exports, listener)
            return
        path = "/admin/v2/persistent/" + status["topic"].removeprefix("persistent://") + f"/permissions/{listener}"
        revoked = httpx.delete(
            exports["PULSAR_ADMIN_URL"] + path,
            headers={"Authorization": f"Bearer {exports['PULSAR_ADMIN_TOKEN']}"},
            timeout=15,
        )
        assert revoked.status_code in (200, 204), revoked.text


KAFKA = BrokerCase("kafka", "local-kafka", kafka_produce, "refused the listener's credential")
PULSAR = BrokerCase("pulsar", "local-pulsar", pulsar_produce, "Pulsar denied")
BOTH = pytest.mark.parametrize("broker", [KAFKA, PULSAR], ids=lambda case: case.name)
