"""The credential life cycle of one principal: issue, rotate, repair, revoke — decided here only.

Every generation has a user name (Kafka) or role (Pulsar) of its own, never reused: a revoked
credential cannot regain access at a later rotation, nor when the pipeline or principal is
created again (the name carries the pipeline's uid). Rotation issues generation N+1 while N
stays valid for the grace period, then N is revoked for real.

The plan starts from the principal's `CredentialRecord` in its ownership claim — the operator's
own record, never the pipeline's status — and from what was observed of the Secret and the
broker. The reconciler applies exactly the actions returned, then stores the returned record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from eventpipeline.api.claim import CredentialRecord, PrincipalRole
from eventpipeline.planning import naming
from eventpipeline.planning.clock import iso, parse_iso

IssueWhy = Literal["issue", "rotate", "repair"]
RevokeWhy = Literal["grace-ended", "principal-removed", "access-withdrawn"]


@dataclass(frozen=True)
class RotationPolicy:
    rotate_every: timedelta
    grace_period: timedelta


@dataclass(frozen=True)
class ObservedCredential:
    """What a look at the principal's Secret and the broker found for the current generation."""

    # Every place the credential is delivered (the Secret, a producer's Airflow connection) is
    # present, ours, unedited and holds the current generation.
    secret_intact: bool
    on_broker: bool  # the broker still has the credential (Kafka SCRAM user)


@dataclass(frozen=True)
class IssueCredential:
    """Create (or replace) the credential of `username` on the broker and write it to the Secret."""

    username: str
    why: IssueWhy


@dataclass(frozen=True)
class RevokeCredential:
    """Take `username`'s credential and every grant of it away, for good."""

    username: str
    why: RevokeWhy


CredentialAction = IssueCredential | RevokeCredential


@dataclass(frozen=True)
class CredentialPlan:
    """The actions for one principal and the record that holds once they are applied."""

    actions: tuple[CredentialAction, ...]
    record: CredentialRecord | None

    @property
    def issue(self) -> IssueCredential | None:
        return next((action for action in self.actions if isinstance(action, IssueCredential)), None)

    @property
    def revoked(self) -> list[str]:
        return [action.username for action in self.actions if isinstance(action, RevokeCredential)]

    @property
    def valid_usernames(self) -> list[str]:
        return self.record.valid_usernames() if self.record is not None else []


def plan_credential(
    *,
    username_base: str,
    role: PrincipalRole,
    record: CredentialRecord | None,
    observed: ObservedCredential | None,
    now: datetime,
    policy: RotationPolicy,
    rotate_request: str | None,
    deliverable: bool = True,
) -> CredentialPlan:
    """Decide the next credential step of one principal that is in the spec (`now` in UTC).

    A rotation requested while the previous generation is still in its grace period waits for
    the revocation, then happens on a later run (both generations could be replaced otherwise).

    `deliverable` is False when the credential has nowhere to go: a producer whose only delivery
    is an Airflow connection on an instance its namespace may no longer use, or that is gone.
    Such a principal is revoked like a withdrawn one, and gets a new generation once it can be
    delivered again.
    """
    if not deliverable:
        if record is None or record.withdrawn:
            return CredentialPlan((), record)
        return plan_removal(record, "access-withdrawn")
    if record is None or record.withdrawn:
        generation = 1 if record is None else record.generation + 1
        username = naming.generation_username(username_base, generation)
        issued = _issued(role, generation=generation, username=username, now=now, policy=policy, previous=None)
        issued.rotate_request = rotate_request  # a request older than the credential asks for nothing
        return CredentialPlan((IssueCredential(username, "issue"),), issued)
    actions: list[CredentialAction] = []
    if record.previous_username and record.previous_revoke_at:
        if now < parse_iso(record.previous_revoke_at):
            return _with_repair(record, observed, ())
        actions.append(RevokeCredential(record.previous_username, "grace-ended"))
        record = record.model_copy(update={"previous_username": None, "previous_revoke_at": None})
    requested = rotate_request is not None and rotate_request != record.rotate_request
    due = now >= parse_iso(record.next_rotation_at)
    if (due or requested) and not actions:
        generation = record.generation + 1
        username = naming.generation_username(username_base, generation)
        rotated = _issued(
            role, generation=generation, username=username, now=now, policy=policy, previous=record.username
        )
        rotated.rotate_request = rotate_request if requested else record.rotate_request
        return CredentialPlan((IssueCredential(username, "rotate"),), rotated)
    return _with_repair(record, observed, tuple(actions))


def plan_removal(record: CredentialRecord, why: RevokeWhy) -> CredentialPlan:
    """Revoke every generation of a principal that left the spec or lost its access.

    The record stays, marked withdrawn, so the principal's next credential (if it comes back)
    is a new generation: a revoked user name or Pulsar role is never valid again.
    """
    revocations = tuple(RevokeCredential(username, why) for username in record.valid_usernames())
    withdrawn = record.model_copy(update={"previous_username": None, "previous_revoke_at": None, "withdrawn": True})
    return CredentialPlan(revocations, withdrawn)


def _with_repair(
    record: CredentialRecord, observed: ObservedCredential | None, actions: tuple[CredentialAction, ...]
) -> CredentialPlan:
    """Re-issue the current generation when its Secret or broker credential was changed or removed."""
    if observed is not None and not (observed.secret_intact and observed.on_broker):
        actions = (*actions, IssueCredential(record.username, "repair"))
    return CredentialPlan(actions, record)


def _issued(
    role: PrincipalRole,
    *,
    generation: int,
    username: str,
    now: datetime,
    policy: RotationPolicy,
    previous: str | None,
) -> CredentialRecord:
    return CredentialRecord(
        role=role,
        generation=generation,
        username=username,
        rotated_at=iso(now),
        next_rotation_at=iso(now + policy.rotate_every),
        previous_username=previous,
        previous_revoke_at=iso(now + policy.grace_period) if previous else None,
    )


def next_due(moments: Iterable[str | None]) -> datetime | None:
    """The earliest of some rotation and revocation times: when a credential step falls due."""
    return min((parse_iso(moment) for moment in moments if moment), default=None)
