"""Topic policy: what a pipeline may ask of a broker's topics (config keys and values, partitions).

The platform team states the policy on the ClusterBroker / Broker (`spec.topicPolicy`). A topic
is never created or changed into a state the policy refuses; the violations become a condition
(`TopicConfigNotAllowed`, `QuotaExceeded`) whose message says what to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eventpipeline.api.broker import TopicPolicy

TOPIC_CONFIG_NOT_ALLOWED = "TopicConfigNotAllowed"
QUOTA_EXCEEDED = "QuotaExceeded"
INFINITE = -1


@dataclass(frozen=True)
class Violation:
    """One way a pipeline's topic breaks its broker's policy; `message` says what to fix."""

    reason: str
    message: str


def check_topic_policy(
    policy: TopicPolicy,
    partitions: int,
    config: Mapping[str, str],
    namespace_partitions_in_use: int,
    current_partitions: int = 0,
) -> list[Violation]:
    """Violations of `policy` by a topic with `partitions` and `config`; empty when it may proceed.

    `namespace_partitions_in_use` counts the partitions of the namespace's *other* pipelines on
    this broker; `current_partitions` is what the topic has now (0 when it does not exist).
    Quotas only stop growth: a topic that already has its partitions is never reported for them,
    so lowering a quota does not break pipelines that exist.
    """
    violations = _config_violations(policy, config)
    wanted = max(partitions, current_partitions)
    if partitions > current_partitions:
        if partitions > policy.max_partitions_per_pipeline:
            violations.append(
                Violation(
                    QUOTA_EXCEEDED,
                    f"topic.partitions {partitions} is above the broker's limit of "
                    f"{policy.max_partitions_per_pipeline} per pipeline; ask for at most "
                    f"{max(policy.max_partitions_per_pipeline, current_partitions)}",
                )
            )
        elif namespace_partitions_in_use + wanted > policy.max_partitions_per_namespace:
            room = max(policy.max_partitions_per_namespace - namespace_partitions_in_use, current_partitions)
            violations.append(
                Violation(
                    QUOTA_EXCEEDED,
                    f"topic.partitions {partitions} would bring the namespace to "
                    f"{namespace_partitions_in_use + wanted} partitions on this broker, above its quota of "
                    f"{policy.max_partitions_per_namespace}; ask for at most {room}, or free partitions "
                    "in other pipelines of the namespace",
                )
            )
    return violations


def _config_violations(policy: TopicPolicy, config: Mapping[str, str]) -> list[Violation]:
    allowed = set(policy.allowed_config_keys)
    refused = sorted(key for key in config if key not in allowed)
    violations = []
    if refused:
        violations.append(
            Violation(
                TOPIC_CONFIG_NOT_ALLOWED,
                f"topic.config keys {', '.join(refused)} are not allowed by the broker's topicPolicy; remove "
                f"them (allowed: {', '.join(sorted(allowed))})",
            )
        )
    violations.extend(_value_violations(policy, config, allowed))
    return violations


def _value_violations(policy: TopicPolicy, config: Mapping[str, str], allowed: set[str]) -> list[Violation]:
    problems: list[str] = []
    if "retention.ms" in config and "retention.ms" in allowed:
        problems.extend(_retention_problems(policy, config["retention.ms"]))
    if "max.message.bytes" in config and "max.message.bytes" in allowed:
        size = _integer(config["max.message.bytes"])
        if size is None or size < 0:
            problems.append(f"max.message.bytes {config['max.message.bytes']!r} must be a whole number of bytes")
        elif size > policy.max_message_bytes:
            problems.append(f"max.message.bytes {size} is above the broker's limit of {policy.max_message_bytes}")
    return [Violation(TOPIC_CONFIG_NOT_ALLOWED, problem) for problem in problems]


def _retention_problems(policy: TopicPolicy, text: str) -> list[str]:
    retention = _integer(text)
    if retention is None or retention < INFINITE:
        return [f"retention.ms {text!r} must be a whole number of milliseconds"]
    if retention == INFINITE:
        if policy.allow_infinite_retention:
            return []
        return ['retention.ms "-1" (keep forever) is not allowed by the broker\'s topicPolicy; set a duration']
    if retention < policy.min_retention_ms:
        return [f"retention.ms {retention} is below the broker's minimum of {policy.min_retention_ms}"]
    if policy.max_retention_ms is not None and retention > policy.max_retention_ms:
        return [f"retention.ms {retention} is above the broker's maximum of {policy.max_retention_ms}"]
    return []


def _integer(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None
