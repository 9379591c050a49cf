"""The topic part: claim the topic (and dead-letter topic), then create or converge them.

observe: the pipeline's recorded topic claim, else the name the broker's template gives;
plan: `planning.topic.plan_topic` (inside the backend) — partitions only grow;
apply: the backend; outcome: `TopicReady`.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventpipeline.adapters.claims import StoredClaim
from eventpipeline.adapters.errors import AdapterError
from eventpipeline.api.claim import ClaimKind
from eventpipeline.planning import naming
from eventpipeline.planning.topic import DesiredTopic, dead_letter_for
from eventpipeline.planning.topic_policy import Violation, check_topic_policy
from eventpipeline.reconciler.claims import ClaimBook, ClaimTakenError
from eventpipeline.reconciler.ports import BrokerTarget
from eventpipeline.reconciler.run import Run

CONDITION = "TopicReady"


@dataclass(frozen=True)
class PipelineTopic:
    """The topic a pipeline holds on its broker, as full names (claimed and recorded)."""

    name: str
    dead_letter: str | None


def recorded_topic(claims: ClaimBook, broker_key: str) -> str | None:
    """The topic this pipeline holds on the broker: its record wins over a recomputed name,
    so a changed template never moves, strands or deletes a pipeline's topic."""
    held = [claim for claim in claims.owned("Topic") if claim.spec.system == broker_key]
    return held[0].spec.name if held else None


def reconcile_topic(run: Run, claims: ClaimBook, broker: BrokerTarget) -> PipelineTopic:
    pipeline = run.pipeline
    spec = pipeline.spec.topic
    topic = recorded_topic(claims, broker.key)
    if topic is None:
        try:
            local = naming.topic_name(broker.spec.topic_template, pipeline.namespace, pipeline.name, spec.name)
        except naming.NamingError as error:
            raise run.fail(CONDITION, "TopicNameNotAllowed", str(error)) from error
        topic = broker.backend.locate(local, pipeline.namespace)
    dead_letter = dead_letter_for(pipeline.spec, topic)
    held = claims.find("Topic", broker.key, topic)
    topic_absent = False if held is not None else _unclaimed_absent(run, claims, broker, "Topic", topic)
    violations = _policy_violations(run, claims, broker, topic, (held.spec.partitions or 0) if held else 0)
    # A claim taken now records the partitions the topic is about to get (see `_take`).
    claim = held or _take(run, claims, broker, "Topic", topic, partitions=None if violations else spec.partitions)
    dead_letter_absent = False
    if dead_letter is not None:
        _, dead_letter_absent = _claim(run, claims, broker, "DeadLetterTopic", dead_letter)
    if violations:
        raise run.fail(CONDITION, violations[0].reason, "; ".join(violation.message for violation in violations))
    managed = frozenset(broker.spec.topic_policy.allowed_config_keys)
    try:
        result = broker.backend.ensure_topic(
            DesiredTopic(topic, spec.partitions, spec.replication_factor, spec.config, managed),
            seen_absent=topic_absent,
        )
        if dead_letter is not None:
            broker.backend.ensure_topic(
                DesiredTopic(dead_letter, 1, spec.replication_factor, {}), seen_absent=dead_letter_absent
            )
        claims.save(claim, claim.spec.model_copy(update={"partitions": result.partitions}))
    except AdapterError as error:
        raise run.fail(CONDITION, error.reason, str(error)) from error
    run.report.topic = result.name
    run.report.partitions = result.partitions
    if result.created:
        run.note("Normal", "TopicCreated", f"created topic {result.name} with {result.partitions} partition(s)")
    if result.grown_from is not None:
        run.note(
            "Normal", "PartitionsGrown", f"topic {result.name}: {result.grown_from} → {result.partitions} partitions"
        )
    if result.config_changed:
        run.note("Normal", "TopicConfigured", f"topic {result.name}: set {', '.join(result.config_changed)}")
    if result.shrink_refused_from is not None:
        raise run.fail(
            CONDITION,
            "PartitionsCannotShrink",
            f"topic {result.name} has {result.shrink_refused_from} partitions and cannot shrink to "
            f"{spec.partitions}; set topic.partitions to at least {result.shrink_refused_from}",
        )
    run.ok(CONDITION, "TopicReady", f"topic {result.name} has {result.partitions} partition(s)")
    return PipelineTopic(topic, dead_letter)


def _policy_violations(
    run: Run, claims: ClaimBook, broker: BrokerTarget, topic: str, current_partitions: int
) -> list[Violation]:
    """The broker's topic policy: allowed config keys and values, partition quotas; a topic is never
    changed to what it forbids. The namespace's usage is read only when partitions would grow."""
    spec = run.pipeline.spec.topic
    try:
        grows = spec.partitions > current_partitions
        in_use = claims.partitions_of_others(broker.key, besides=topic) if grows else 0
    except AdapterError as error:
        raise run.fail(CONDITION, error.reason, str(error)) from error
    return check_topic_policy(broker.spec.topic_policy, spec.partitions, spec.config, in_use, current_partitions)


def _claim(run: Run, claims: ClaimBook, broker: BrokerTarget, kind: ClaimKind, topic: str) -> tuple[StoredClaim, bool]:
    """Hold the topic's claim; also says whether the topic was just read absent (a new pipeline's
    topic: no need to read it again before creating it)."""
    held = claims.find(kind, broker.key, topic)
    if held is not None:
        return held, False
    absent = _unclaimed_absent(run, claims, broker, kind, topic)
    return _take(run, claims, broker, kind, topic, partitions=None), absent


def _unclaimed_absent(run: Run, claims: ClaimBook, broker: BrokerTarget, kind: ClaimKind, topic: str) -> bool:
    """Whether a topic the pipeline holds no claim on is absent; one that exists without any
    pipeline's claim was not made by the operator and is refused."""
    try:
        exists = broker.backend.topic_exists(topic)
    except AdapterError as error:
        raise run.fail(CONDITION, error.reason, str(error)) from error
    if exists and not _held_elsewhere(claims, broker.key, topic):
        raise run.fail(
            CONDITION,
            "TopicConflict",
            f"topic {topic} already exists on {broker.key} and was not created for a pipeline; "
            "pick another topic.name, or ask the broker's owner to remove it",
        )
    return not exists


def _take(
    run: Run, claims: ClaimBook, broker: BrokerTarget, kind: ClaimKind, topic: str, *, partitions: int | None
) -> StoredClaim:
    """Take the claim before the topic exists.

    `partitions`, when given, is recorded with it: the partitions the topic is about to be
    created with, after the quota allowed them. Recording them before the topic exists is the
    conservative side: other pipelines' quota checks count them at once (if the creation
    fails, until this pipeline's next run converges or its deletion releases the claim), and
    a later run of this pipeline takes the quota as checked for them, as if the topic had been
    created at the moment of the check. The count is corrected from the broker's answer after
    `ensure_topic`."""
    facts = None if partitions is None else {"partitions": partitions}
    try:
        return claims.take(kind, broker.key, topic, facts=facts)
    except ClaimTakenError as taken:
        raise run.fail(
            CONDITION, "TopicConflict", f"topic {topic} is owned by pipeline {taken.owner}; pick another topic.name"
        ) from taken


def _held_elsewhere(claims: ClaimBook, broker_key: str, topic: str) -> bool:
    """Whether some claim (maybe an orphan left by a deleted pipeline with Retain) records the topic."""
    return claims.exists_anywhere("Topic", broker_key, topic)
