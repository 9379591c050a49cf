"""The access part: exactly the ACLs / grants the plan's valid generations need, nothing else.

observe + diff: `planning.access` inside the backend, over what this pipeline owns according to
its claims (exact names); apply: the backend; outcome: `AccessReady`.
"""

from __future__ import annotations

from eventpipeline.adapters.errors import AdapterError
from eventpipeline.planning.access import untyped_kafka_principals
from eventpipeline.planning.principals import grantees
from eventpipeline.reconciler.backends import Ownership
from eventpipeline.reconciler.claims import ClaimBook
from eventpipeline.reconciler.credentials import PrincipalPlan
from eventpipeline.reconciler.ports import BrokerTarget
from eventpipeline.reconciler.run import Run
from eventpipeline.reconciler.topic import PipelineTopic

CONDITION = "AccessReady"


def owned_principals(plans: list[PrincipalPlan]) -> frozenset[str]:
    """Every user name / role the pipeline has ever been recorded with and not yet forgotten."""
    names: set[str] = set()
    for item in plans:
        names.update(item.plan.valid_usernames)
        names.update(item.plan.revoked)
        if item.claim.spec.credential is not None:
            names.update(item.claim.spec.credential.valid_usernames())
            names.add(item.claim.spec.credential.username)  # withdrawn too: its leftovers are still ours
    return frozenset(names)


def reconcile_access(
    run: Run, claims: ClaimBook, broker: BrokerTarget, topic: PipelineTopic, plans: list[PrincipalPlan]
) -> None:
    pipeline = run.pipeline
    usernames = {item.principal.name: item.plan.valid_usernames for item in plans if item.principal is not None}
    wanted = grantees(pipeline.spec, pipeline.namespace, pipeline.name, usernames)
    externals = sorted({external.principal for external in pipeline.spec.external_principals})
    untyped = untyped_kafka_principals(externals) if broker.spec.type == "Kafka" else []
    if untyped:
        # Left out, the rest of the pipeline's access converges; the condition below says why.
        wanted = [grantee for grantee in wanted if not (grantee.external and grantee.principal in untyped)]
        externals = [principal for principal in externals if principal not in untyped]
    topic_claim = claims.find("Topic", broker.key, topic.name)
    granted_before = set(topic_claim.spec.externals) if topic_claim is not None else set()
    ownership = Ownership(owned_principals(plans), frozenset(granted_before | set(externals)))
    try:
        if topic_claim is not None and set(externals) - granted_before:
            # Recorded before granting: an external principal's ACLs are ours to remove later.
            topic_claim = claims.save(
                topic_claim, topic_claim.spec.model_copy(update={"externals": sorted(granted_before | set(externals))})
            )
        result = broker.backend.sync_access(topic.name, wanted, ownership, topic.dead_letter)
        if topic_claim is not None and topic_claim.spec.externals != externals:
            claims.save(topic_claim, topic_claim.spec.model_copy(update={"externals": externals}))
    except AdapterError as error:
        raise run.fail(CONDITION, error.reason, str(error)) from error
    run.report.external_principals = externals
    if result.added or result.removed:
        first_time = not any(c.type == CONDITION and c.status == "True" for c in pipeline.status.conditions)
        run.note(
            "Normal" if first_time else "Warning",
            "AccessGranted" if first_time else "AccessRepaired",
            f"{result.added} grant(s) added, {result.removed} removed: {'; '.join(result.details[:10])}",
        )
    if untyped:
        # Not raised: the rest of the run (the new credentials' Secrets, the connection) goes on.
        run.fail(
            CONDITION,
            "ExternalPrincipalInvalid",
            f"externalPrincipals {', '.join(untyped)}: a Kafka principal carries its type, e.g. User:{untyped[0]}; "
            "nothing was granted to it. Fix spec.externalPrincipals",
        )
        return
    run.ok(CONDITION, "AccessReady", f"{len(wanted)} principal(s) have exactly their access, nothing more")
