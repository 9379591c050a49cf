"""The session: connect with the listener Secret, reconnect when it changes, replay once per annotation."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from eventpipeline.listener.session import Session
from eventpipeline.listener.source import SourceError
from eventpipeline.listener.stats import ListenerStats
from eventpipeline.planning.serving import PipelineConfig
from tests.unit.listener.fakes import FakeAirflow, FakeSource, config


class Cluster:
    """The listener Secret as the API server has it, and what the session opened with it."""

    def __init__(self) -> None:
        self.secret: dict[str, str] | None = {"password": "one"}
        self.fingerprint = "fp-1"
        self.opened_with: list[dict[str, str]] = []
        self.sources: list[FakeSource] = []
        self.refuse: str | None = None
        self.events: list[tuple[str, str, str]] = []

    def read_secret(self, _namespace: str, _name: str) -> tuple[dict[str, str], str] | None:
        return None if self.secret is None else (dict(self.secret), self.fingerprint)

    def source(self, _config: PipelineConfig, secret: Mapping[str, str]) -> FakeSource:
        if self.refuse:
            raise SourceError(self.refuse)
        self.opened_with.append(dict(secret))
        self.sources.append(FakeSource([]))
        return self.sources[-1]

    def session(self, stats: ListenerStats, **kwargs: str | None) -> Session:
        return Session(
            config(),
            stats,
            source_factory=self.source,
            read_secret=self.read_secret,
            resolve_trigger=lambda _ref, _ns: FakeAirflow(),
            emit_event=lambda _config, *event: self.events.append(event),
            **kwargs,
        )


def test_a_changed_secret_asks_for_a_new_connection_with_the_new_credential() -> None:
    cluster, stats = Cluster(), ListenerStats("ns/rotate", "r")
    session = cluster.session(stats)
    assert session.open() is not None
    session.secret_changed("fp-1")
    assert not session.reconnect_wanted(), "the same data: keep the connection"
    cluster.secret, cluster.fingerprint = {"password": "two"}, "fp-2"
    session.secret_changed("fp-2")
    assert session.reconnect_wanted()
    assert session.open() is not None
    assert not session.reconnect_wanted()
    assert cluster.opened_with == [{"password": "one"}, {"password": "two"}]


def test_a_secret_rotated_while_connecting_asks_for_another_connection() -> None:
    cluster, stats = Cluster(), ListenerStats("ns/race", "r")
    session = cluster.session(stats)
    session.secret_changed("fp-2")  # the watch saw the new Secret before the read returned it
    assert session.open() is not None
    assert session.reconnect_wanted()


def test_a_missing_or_refused_secret_is_reported_and_no_connection_opens() -> None:
    cluster, stats = Cluster(), ListenerStats("ns/missing", "r")
    session = cluster.session(stats)
    cluster.secret = None
    assert session.open() is None
    assert "does not exist yet" in (stats.snapshot().error or "")
    cluster.secret, cluster.refuse = {"password": "x"}, "Kafka refused the listener's credential"
    assert session.open() is None
    assert stats.snapshot().error == "Kafka refused the listener's credential"
    cluster.refuse = None
    connection = session.open()
    assert connection is not None
    session.report(connection.source)
    assert stats.snapshot().error is None


def test_a_replay_annotation_rewinds_once_per_value() -> None:
    cluster, stats = Cluster(), ListenerStats("ns/replay", "r")
    session = cluster.session(stats, replay_annotation="2026-01-31T12:00:00Z")
    first = session.open()
    assert first is not None
    assert cluster.sources[0].opened == [datetime(2026, 1, 31, 12, tzinfo=UTC)]
    assert stats.snapshot().replay_request == "2026-01-31T12:00:00Z"
    cluster.sources[0].outcome = "rewound to 2026-01-31T12:00:00+00:00"
    session.report(first.source)
    assert stats.snapshot().replay == "rewound to 2026-01-31T12:00:00+00:00"
    assert [reason for _type, reason, _ in cluster.events] == ["Replayed"]

    session.annotation_changed("2026-01-31T12:00:00Z")
    assert not session.reconnect_wanted(), "the same value again: no second replay"
    session.annotation_changed("2026-02-01T00:00:00Z")
    assert session.reconnect_wanted()
    assert session.open() is not None
    assert cluster.sources[1].opened == [datetime(2026, 2, 1, tzinfo=UTC)]


def test_a_replay_acted_on_by_the_previous_listener_is_not_repeated() -> None:
    cluster, stats = Cluster(), ListenerStats("ns/restart", "r")
    session = cluster.session(stats, replay_annotation="2026-01-31T12:00:00Z", replay_acted="2026-01-31T12:00:00Z")
    assert session.open() is not None
    assert cluster.sources[0].opened == [None]


def test_an_unreadable_replay_time_is_refused_with_an_event_and_consuming_goes_on() -> None:
    cluster, stats = Cluster(), ListenerStats("ns/bad-replay", "r")
    session = cluster.session(stats, replay_annotation="yesterday")
    assert session.open() is not None
    assert cluster.sources[0].opened == [None]
    assert (stats.snapshot().replay or "").startswith("refused:")
    assert [reason for _type, reason, _ in cluster.events] == ["ReplayRefused"]
