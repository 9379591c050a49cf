"""The reconciler on in-memory fakes: ordering, rotation and revocation timing, repair, conflicts,
tampering and deletion — each in milliseconds, with the clock moved by the test."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import SecretStr

from eventpipeline.adapters.airflow import AirflowSettings
from eventpipeline.adapters.errors import UnavailableError
from eventpipeline.adapters.kube import SecretView
from eventpipeline.api.pipeline import PrincipalStatus
from eventpipeline.planning import handoff, naming
from tests.unit.reconciler.fakes import StoredSecret
from tests.unit.reconciler.world import World, spec

TOPIC = "shop.orders"


def _ready_world() -> World:
    world = World()
    world.apply("shop", "orders", spec())
    world.reconcile("shop", "orders")
    return world


def test_first_reconcile_creates_topic_credentials_access_and_connection() -> None:
    world = _ready_world()
    assert world.condition("shop", "orders") == ("True", "Reconciled")
    assert world.broker.topics == {TOPIC: 1, f"{TOPIC}.dlq": 1}
    app = world.secret("shop", "orders", "app")
    assert world.broker.can(app["username"], TOPIC, "produce")
    assert not world.broker.can(app["username"], TOPIC, "consume")
    listener = world.secret("shop", "orders", "listener")
    assert world.broker.can(listener["username"], TOPIC, "consume")
    assert world.broker.can(listener["username"], f"{TOPIC}.dlq", "produce")
    assert world.connections.items["shop.orders"]["login"] == listener["username"]
    # Every identity on the broker is recorded in a claim the pipeline owns.
    assert set(world.broker.credentials) == world.usernames_in_claims()


def test_a_run_resolves_each_reference_once_and_the_next_run_afresh() -> None:
    world = World()
    world.apply("shop", "orders", spec())
    world.reconcile("shop", "orders")
    assert sorted(world.resolver.resolved) == ["airflow", "broker"]
    world.reconcile("shop", "orders")
    assert sorted(world.resolver.resolved) == ["airflow", "airflow", "broker", "broker"]


def test_a_run_reads_each_secret_once_and_the_next_run_afresh() -> None:
    world = World()
    world.apply("shop", "orders", spec())
    world.reconcile("shop", "orders")
    # The producer's and the listener's Secrets, and the listener's own copy: each read once,
    # then known from the run's own writes.
    assert sorted(Counter(world.cluster.reads).values()) == [1, 1, 1]
    world.cluster.reads.clear()
    world.advance(hours=24)  # a rotation writes every Secret again
    world.reconcile("shop", "orders")
    assert sorted(Counter(world.cluster.reads).values()) == [1, 1, 1]
    world.cluster.secrets[("shop", naming.secret_name("orders", "app"))].data["password"] = "edited"
    result = world.reconcile("shop", "orders")
    assert any(note.reason == "CredentialRepaired" for note in result.notes)


def test_a_second_reconcile_changes_nothing() -> None:
    world = _ready_world()
    before = (dict(world.broker.credentials), dict(world.connections.items), dict(world.claims.items))
    result = world.reconcile("shop", "orders")
    assert (dict(world.broker.credentials), dict(world.connections.items), dict(world.claims.items)) == before
    assert result.notes == []


def test_rotation_keeps_both_generations_valid_during_grace_then_revokes_the_old_one() -> None:
    world = _ready_world()
    first = world.secret("shop", "orders", "app")["username"]
    world.advance(hours=24)
    world.reconcile("shop", "orders")
    second = world.secret("shop", "orders", "app")["username"]
    assert second != first
    assert world.broker.can(first, TOPIC, "produce") and world.broker.can(second, TOPIC, "produce")
    world.advance(minutes=59)
    world.reconcile("shop", "orders")
    assert world.broker.can(first, TOPIC, "produce"), "revoked before the grace period ended"
    world.advance(minutes=1)
    world.reconcile("shop", "orders")
    assert not world.broker.can(first, TOPIC, "produce")
    assert first not in world.broker.credentials
    assert world.broker.can(second, TOPIC, "produce")


def test_a_revoked_generation_never_comes_back() -> None:
    world = _ready_world()
    seen = [world.secret("shop", "orders", "app")["username"]]
    for _ in range(3):
        world.advance(hours=24)
        world.reconcile("shop", "orders")
        world.advance(hours=1)
        world.reconcile("shop", "orders")
        seen.append(world.secret("shop", "orders", "app")["username"])
    assert len(set(seen)) == 4
    assert [name for name in seen[:-1] if world.broker.can(name, TOPIC, "produce")] == []


def test_rotation_requested_by_annotation_happens_once() -> None:
    world = _ready_world()
    first = world.secret("shop", "orders", "app")["username"]
    world.apply("shop", "orders", spec(), annotations={"eventpipeline.dev/rotate": "now-1"})
    world.reconcile("shop", "orders")
    second = world.secret("shop", "orders", "app")["username"]
    assert second != first
    world.advance(hours=2)
    world.reconcile("shop", "orders")
    world.reconcile("shop", "orders")
    assert world.secret("shop", "orders", "app")["username"] == second


def test_an_edited_secret_is_repaired() -> None:
    world = _ready_world()
    key = ("shop", naming.secret_name("orders", "app"))
    world.cluster.secrets[key].data["password"] = "typed-by-hand"
    result = world.reconcile("shop", "orders")
    app = world.secret("shop", "orders", "app")
    assert app["password"] == world.broker.credentials[app["username"]]
    assert "CredentialRepaired" in [note.reason for note in result.notes]


def test_a_grant_deleted_by_hand_is_restored() -> None:
    world = _ready_world()
    app = world.secret("shop", "orders", "app")["username"]
    del world.broker.grants[TOPIC][app]
    world.reconcile("shop", "orders")
    assert world.broker.can(app, TOPIC, "produce")


def test_grants_of_others_on_the_topic_are_never_touched() -> None:
    world = _ready_world()
    world.broker.grants[TOPIC]["platform-auditor"] = frozenset({"consume"})
    world.advance(hours=25)
    world.reconcile("shop", "orders")
    assert world.broker.grants[TOPIC]["platform-auditor"] == frozenset({"consume"})


def test_a_tampered_status_changes_no_identity() -> None:
    world = _ready_world()
    world.broker.credentials["admin"] = "the-admins-password"
    victim = world.secret("shop", "orders", "listener")["username"]
    forged = PrincipalStatus(
        name="app",
        role="producer",
        secret_name="orders.app.credentials",
        username="admin",
        generation=1,
        previous_username=victim,
        previous_revoke_at="2000-01-01T00:00:00Z",
        next_rotation_at="2000-01-01T00:00:00Z",
    )
    world.tamper_status("shop", "orders", principals=[forged], topic="payments.ledger")
    world.reconcile("shop", "orders")
    assert world.broker.credentials["admin"] == "the-admins-password"
    assert "admin" not in world.secret("shop", "orders", "app").values()
    assert world.broker.can(victim, TOPIC, "consume")
    assert world.objects[("shop", "orders")].status.topic == TOPIC


def test_a_topic_owned_by_another_pipeline_is_refused_and_left_alone() -> None:
    world = _ready_world()
    owner_grants = dict(world.broker.grants[TOPIC])
    world.apply("shop", "thief", spec(topic={"name": TOPIC}))
    world.reconcile("shop", "thief")
    assert world.condition("shop", "thief") == ("False", "TopicConflict")
    assert world.broker.grants[TOPIC] == owner_grants


def test_a_topic_that_exists_outside_any_pipeline_is_refused() -> None:
    world = World()
    world.broker.topics["shop.legacy"] = 3
    world.apply("shop", "legacy", spec())
    world.reconcile("shop", "legacy")
    assert world.condition("shop", "legacy") == ("False", "TopicConflict")
    assert world.broker.grants.get("shop.legacy") is None


def test_a_pipeline_cannot_take_another_pipelines_dead_letter_topic() -> None:
    world = _ready_world()
    world.apply("shop", "orders.dlq", spec())
    world.reconcile("shop", "orders.dlq")
    assert world.condition("shop", "orders.dlq") == ("False", "TopicNameNotAllowed")
    world.apply("shop", "other", spec(topic={"name": f"{TOPIC}.dlq"}))
    world.reconcile("shop", "other")
    assert world.condition("shop", "other") == ("False", "TopicNameNotAllowed")


def test_a_secret_the_pipeline_does_not_own_is_left_untouched() -> None:
    world = World()
    name = naming.secret_name("db", "admin")
    world.cluster.secrets[("shop", name)] = StoredSecret({"password": "db-root"}, {}, {"someone-else"})
    world.apply("shop", "db", spec(producers=[{"name": "admin"}]))
    world.reconcile("shop", "db")
    world.reconcile("shop", "db")
    assert world.condition("shop", "db") == ("False", "SecretConflict")
    assert world.cluster.secrets[("shop", name)].data == {"password": "db-root"}
    assert world.cluster.secrets[("shop", name)].owner_uids == {"someone-else"}


def test_secret_names_of_different_pipelines_never_collide() -> None:
    assert naming.secret_name("db", "admin-x") != naming.secret_name("db-admin", "x")


def test_an_unclaimed_airflow_connection_is_never_overwritten() -> None:
    world = World()
    world.connections.items["aws_default"] = {"connection_id": "aws_default", "password": "aws-secret"}
    airflow = spec()["airflow"] | {"connectionId": "aws_default"}
    world.apply("shop", "orders", spec(airflow=airflow))
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders") == ("False", "ConnectionConflict")
    assert world.connections.items["aws_default"]["password"] == "aws-secret"
    world.delete("shop", "orders")
    assert "aws_default" in world.connections.items


def test_connection_ids_of_two_namespaces_never_collide() -> None:
    world = World()
    world.apply("shop", "a-b", spec())
    world.apply("payments", "a-b", spec())
    world.reconcile("shop", "a-b")
    world.reconcile("payments", "a-b")
    assert set(world.connections.items) == {"shop.a-b", "payments.a-b"}
    airflow = spec()["airflow"] | {"connectionId": "shop.a-b"}
    world.apply("payments", "squatter", spec(airflow=airflow))
    world.reconcile("payments", "squatter")
    assert world.condition("payments", "squatter") == ("False", "ConnectionIdNotAllowed")


def test_an_explicit_connection_id_is_owned_by_the_first_pipeline_only() -> None:
    world = World()
    airflow = spec()["airflow"] | {"connectionId": "shared_name"}
    world.apply("shop", "first", spec(airflow=airflow))
    world.apply("payments", "second", spec(airflow=airflow))
    world.reconcile("shop", "first")
    written = dict(world.connections.items["shared_name"])
    world.reconcile("payments", "second")
    assert world.condition("payments", "second") == ("False", "ConnectionConflict")
    assert world.connections.items["shared_name"] == written
    world.delete("payments", "second")
    assert world.connections.items["shared_name"] == written


def test_a_removed_principal_is_revoked_and_its_secret_deleted() -> None:
    world = _ready_world()
    app = world.secret("shop", "orders", "app")["username"]
    world.apply("shop", "orders", spec(producers=[]))
    world.reconcile("shop", "orders")
    assert app not in world.broker.credentials
    assert not world.broker.can(app, TOPIC, "produce")
    assert ("shop", naming.secret_name("orders", "app")) not in world.cluster.secrets
    assert app not in world.usernames_in_claims()


def test_deletion_removes_exactly_what_was_recorded() -> None:
    world = _ready_world()
    world.broker.grants[TOPIC]["platform-auditor"] = frozenset({"consume"})
    world.delete("shop", "orders")
    assert world.broker.credentials == {}
    assert world.connections.items == {}
    assert world.broker.grants[TOPIC] == {"platform-auditor": frozenset({"consume"})}
    assert TOPIC in world.broker.topics  # deletionPolicy Retain (the default)


def test_deletion_follows_the_recorded_topic_not_a_changed_template() -> None:
    world = World()
    world.apply("shop", "orders", spec(topic={"deletionPolicy": "Delete"}))
    world.reconcile("shop", "orders")
    world.resolver.template = "team.{namespace}.{name}"
    world.reconcile("shop", "orders")
    assert world.objects[("shop", "orders")].status.topic == TOPIC
    world.delete("shop", "orders")
    assert world.broker.topics == {}


def test_deletion_while_the_broker_is_down_fails_then_finishes() -> None:
    world = _ready_world()
    world.broker.down = True
    pipeline = world.objects[("shop", "orders")]
    with pytest.raises(UnavailableError, match="unavailable"):
        world.reconciler.finalize(pipeline)
    assert world.connections.items == {}  # what could be removed is removed, and forgotten
    world.broker.down = False
    world.delete("shop", "orders")
    assert world.broker.credentials == {}
    assert world.claims.specs("Principal") == []


def test_a_failure_mid_rotation_never_loses_a_name_to_revoke() -> None:
    world = _ready_world()
    world.advance(hours=24)
    original = world.broker.sync_access

    def broken(*args: object, **kwargs: object) -> object:
        raise UnavailableError("broker gone")

    world.broker.sync_access = broken  # type: ignore[method-assign,assignment]
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders") == ("False", "BackendUnavailable")
    assert set(world.broker.credentials) <= world.usernames_in_claims()
    world.broker.sync_access = original  # type: ignore[method-assign]
    world.reconcile("shop", "orders")
    world.advance(hours=1)
    world.reconcile("shop", "orders")
    assert set(world.broker.credentials) == world.usernames_in_claims()
    assert len(world.broker.credentials) == 2  # one generation each for app and listener


def test_a_pipeline_created_again_gets_new_user_names_and_adopts_its_retained_topic() -> None:
    world = _ready_world()
    old = world.secret("shop", "orders", "app")["username"]
    world.delete("shop", "orders")
    world.apply("shop", "orders", spec())
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders") == ("True", "Reconciled")
    assert world.secret("shop", "orders", "app")["username"] != old


def test_a_namespace_that_may_not_use_the_broker_gets_nothing() -> None:
    world = World()
    world.apply("intruder", "orders", spec())
    world.reconcile("intruder", "orders")
    assert world.condition("intruder", "orders") == ("False", "NamespaceNotAllowed")
    assert world.broker.topics == {} and world.claims.items == {}


def test_secret_view_ownership_is_by_uid() -> None:
    view = SecretView({}, {}, frozenset({"uid-1"}))
    assert view.owned_by("uid-1") and not view.owned_by("uid-2")


def test_a_dag_without_the_namespace_tag_is_not_authorized() -> None:
    world = World()
    world.resolver.dags.tags_by_dag["process"] = ["eventpipeline:payments"]
    world.apply("shop", "orders", spec())
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders") == ("False", "DagNotAuthorized")
    assert world.condition("shop", "orders", "TriggerAuthorized") == ("False", "DagNotAuthorized")
    message = next(c.message for c in world.objects[("shop", "orders")].status.conditions if c.type == "Ready")
    assert "eventpipeline:shop" in message
    world.resolver.dags.tags_by_dag["process"].append("eventpipeline:shop")
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders") == ("True", "Reconciled")


def test_every_dag_scheduled_on_the_asset_must_accept_the_namespace() -> None:
    world = World()
    world.resolver.dags.tags_by_dag["stranger"] = ["finance"]
    world.resolver.dags.consumers_by_asset["s3://orders"] = ["process", "stranger"]
    airflow = spec()["airflow"] | {"trigger": {"dagId": "process", "mode": "AssetEvent", "assetUri": "s3://orders"}}
    world.apply("shop", "orders", spec(airflow=airflow))
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders") == ("False", "DagNotAuthorized")


def test_namespaced_brokers_are_refused_unless_a_cluster_admin_allows_them() -> None:
    world = World()
    world.apply("shop", "orders", spec(brokerRef={"kind": "Broker", "name": "mine"}))
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders") == ("False", "NamespacedReferencesDisabled")
    assert world.broker.topics == {}


def test_a_topic_config_key_outside_the_brokers_policy_is_refused_and_never_applied() -> None:
    world = World()
    world.apply("shop", "orders", spec(topic={"config": {"flush.messages": "1"}}))
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders") == ("False", "TopicConfigNotAllowed")
    assert world.broker.topics == {}


def test_the_namespace_partition_quota_counts_the_other_pipelines() -> None:
    world = World()
    for index in range(4):  # 4 x 64 partitions: exactly the default namespace quota of 256
        world.apply("shop", f"big{index}", spec(topic={"partitions": 64}))
        world.reconcile("shop", f"big{index}")
        assert world.condition("shop", f"big{index}") == ("True", "Reconciled")
    world.apply("shop", "more", spec())
    world.reconcile("shop", "more")
    assert world.condition("shop", "more") == ("False", "QuotaExceeded")
    assert "shop.more" not in world.broker.topics
    world.apply("payments", "more", spec())
    world.reconcile("payments", "more")
    assert world.condition("payments", "more") == ("True", "Reconciled")


def test_removing_the_namespace_from_the_allowlist_withdraws_access_and_credentials() -> None:
    world = _ready_world()
    app = world.secret("shop", "orders", "app")["username"]
    world.resolver.allowed.discard("shop")
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders") == ("False", "NamespaceNotAllowed")
    assert world.broker.credentials == {}
    assert not world.broker.can(app, TOPIC, "produce")
    assert world.connections.items == {}
    assert ("shop", naming.secret_name("orders", "app")) not in world.cluster.secrets
    assert TOPIC in world.broker.topics  # the data stays
    # Allowed again: new generations, never the revoked names.
    world.resolver.allowed.add("shop")
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders") == ("True", "Reconciled")
    again = world.secret("shop", "orders", "app")["username"]
    assert again != app and again.endswith("-g2")


def test_a_principal_removed_and_added_again_never_gets_its_revoked_name_back() -> None:
    world = _ready_world()
    first = world.secret("shop", "orders", "app")["username"]
    world.apply("shop", "orders", spec(producers=[]))
    world.reconcile("shop", "orders")
    world.apply("shop", "orders", spec())
    world.reconcile("shop", "orders")
    assert world.secret("shop", "orders", "app")["username"] != first
    assert not world.broker.can(first, TOPIC, "produce")


def test_a_briefly_unreachable_broker_is_a_transient_failure_worth_a_quick_retry() -> None:
    world = World()
    world.broker.down = True
    world.apply("shop", "orders", spec())
    result = world.reconcile("shop", "orders")
    assert result.transient_failure is not None and "unavailable" in result.transient_failure
    world.broker.down = False
    assert world.reconcile("shop", "orders").transient_failure is None


def test_a_refusal_that_needs_a_person_is_not_retried_quickly() -> None:
    world = World()
    world.apply("intruder", "orders", spec())
    assert world.reconcile("intruder", "orders").transient_failure is None


def _rotated_world() -> tuple[World, str]:
    world = _ready_world()
    old = world.secret("shop", "orders", "app")["username"]
    world.advance(hours=24)
    world.reconcile("shop", "orders")
    assert world.broker.can(old, TOPIC, "produce")
    return world, old


def test_an_expired_generation_is_revoked_on_time_while_the_pipeline_is_suspended() -> None:
    world, old = _rotated_world()
    world.apply("shop", "orders", spec(suspend=True))
    world.advance(minutes=30)
    world.reconcile("shop", "orders")
    assert world.broker.can(old, TOPIC, "produce"), "revoked before its grace period ended"
    world.advance(minutes=30)
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders") == ("False", "Suspended")
    assert old not in world.broker.credentials and not world.broker.can(old, TOPIC, "produce")
    current = world.secret("shop", "orders", "app")["username"]
    assert world.broker.can(current, TOPIC, "produce")


def test_an_expired_generation_is_revoked_on_time_while_another_part_fails() -> None:
    world, old = _rotated_world()
    world.apply("shop", "orders", spec(topic={"config": {"flush.messages": "1"}}))
    world.advance(hours=1)
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders") == ("False", "TopicConfigNotAllowed")
    assert old not in world.broker.credentials and not world.broker.can(old, TOPIC, "produce")


LISTENER_COPY = ("eventpipeline-system", naming.listener_secret_name("shop", "orders"))


def test_the_listener_gets_its_credential_in_its_own_namespace() -> None:
    world = _ready_world()
    copy = world.cluster.data(*LISTENER_COPY)
    assert handoff.with_description(copy, {}) == world.secret("shop", "orders", "listener")
    assert world.cluster.secrets[LISTENER_COPY].owner_uids == set()  # no owner across namespaces


def test_the_listener_gets_topic_and_airflow_access_from_the_controller() -> None:
    world = _ready_world()
    copy = world.cluster.data(*LISTENER_COPY)
    assert handoff.description_of(copy) == {
        "topic": TOPIC,
        "deadLetterTopic": TOPIC + ".dlq",
        "brokerType": "Kafka",
        "airflow.apiUrl": "http://airflow:8080",
        "airflow.username": "admin",
        "airflow.password": "airflow-secret",
    }


def test_a_changed_airflow_credential_is_handed_over_without_a_new_broker_credential() -> None:
    world = _ready_world()
    before = world.cluster.data(*LISTENER_COPY)
    world.resolver.airflow_settings = AirflowSettings("https://airflow.new:8443", "trigger", SecretStr("rotated"))
    world.reconcile("shop", "orders")
    after = world.cluster.data(*LISTENER_COPY)
    access = handoff.airflow_access(after)
    assert access is not None
    assert (access.api_url, access.username, access.password.get_secret_value()) == (
        "https://airflow.new:8443",
        "trigger",
        "rotated",
    )
    assert handoff.with_description(after, {}) == handoff.with_description(before, {})
    world.reconcile("shop", "orders")
    assert world.cluster.data(*LISTENER_COPY) == after  # up to date: nothing rewritten


def test_a_tampered_status_topic_never_reaches_the_listeners_copy() -> None:
    world = _ready_world()
    world.tamper_status("shop", "orders", topic="payments.ledger", broker_type="Pulsar")
    world.reconcile("shop", "orders")
    copy = world.cluster.data(*LISTENER_COPY)
    assert (copy["topic"], copy["brokerType"]) == (TOPIC, "Kafka")


def test_a_pipeline_without_a_trigger_hands_over_no_airflow_access() -> None:
    world = World()
    world.apply("shop", "orders", spec(airflow={"instanceRef": {"kind": "ClusterAirflowInstance", "name": "main"}}))
    world.reconcile("shop", "orders")
    assert handoff.airflow_access(world.cluster.data(*LISTENER_COPY)) is None


def test_a_tenant_editing_its_listener_secret_never_reaches_the_listeners_copy() -> None:
    world = _ready_world()
    key = ("shop", naming.secret_name("orders", "listener"))
    world.cluster.secrets[key].data["bootstrap.servers"] = "attacker.example:9092"
    world.reconcile("shop", "orders")
    copy = world.cluster.data(*LISTENER_COPY)
    assert "attacker.example:9092" not in copy.values()
    assert world.connections.items["shop.orders"]["password"] == copy["password"]


def test_a_missing_listener_copy_is_reissued() -> None:
    world = _ready_world()
    del world.cluster.secrets[LISTENER_COPY]
    world.reconcile("shop", "orders")
    copy = world.cluster.data(*LISTENER_COPY)
    assert world.broker.credentials[copy["username"]] == copy["password"]


def test_deletion_and_withdrawal_remove_the_listeners_copy() -> None:
    world = _ready_world()
    world.resolver.allowed.discard("shop")
    world.reconcile("shop", "orders")
    assert LISTENER_COPY not in world.cluster.secrets
    world.resolver.allowed.add("shop")
    world.reconcile("shop", "orders")
    assert LISTENER_COPY in world.cluster.secrets
    world.delete("shop", "orders")
    assert LISTENER_COPY not in world.cluster.secrets


def test_a_deletion_that_waits_says_what_is_left() -> None:
    world = _ready_world()
    pipeline = world.objects[("shop", "orders")]
    status = world.reconciler.pending_cleanup(pipeline, "broker unavailable")
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "CleanupPending")
    assert "Topic shop.orders" in ready.message and "broker unavailable" in ready.message


def test_a_kafka_external_principal_without_its_type_is_refused_and_the_rest_converges() -> None:
    world = World()
    externals = [{"principal": "analytics", "access": "Consume"}, {"principal": "User:bi", "access": "Consume"}]
    world.apply("shop", "orders", spec(externalPrincipals=externals))
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", "AccessReady") == ("False", "ExternalPrincipalInvalid")
    assert world.condition("shop", "orders") == ("False", "ExternalPrincipalInvalid")
    assert world.objects[("shop", "orders")].status.external_principals == ["User:bi"]
    assert world.secret("shop", "orders", "app")["username"]  # the pipeline's own principals still get theirs


def test_a_withdrawal_that_cannot_finish_is_a_condition_not_an_event_per_attempt() -> None:
    world = _ready_world()
    world.resolver.allowed.discard("shop")
    world.broker.down = True  # the broker is gone for good: its credentials cannot be revoked
    first = world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", "TopicReady") == ("False", "AccessWithdrawalPending")
    assert LISTENER_COPY not in world.cluster.secrets  # what can be taken back is taken back at once
    assert world.connections.items == {}
    assert "AccessWithdrawalPending" in {note.reason for note in first.notes}
    for _ in range(3):
        again = world.reconcile("shop", "orders")
        assert again.notes == []  # nothing changed: no new Event
    world.broker.down = False
    world.reconcile("shop", "orders")
    assert world.condition("shop", "orders", "TopicReady") == ("False", "NamespaceNotAllowed")
    assert world.broker.credentials == {}
