"""The credential life cycle of one principal: first issue, rotation, revocation of the old one.

Two generations alternate (`-a` / `-b`): rotation issues generation N+1 while N stays valid for
the grace period, then N is revoked for real. Each step is decided from status alone, so a
rotation interrupted by a restart resumes where it stopped and never leaves no valid credential.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from eventpipeline.api.pipeline import PrincipalStatus
from eventpipeline.planning import naming

Step = Literal["issue", "rotate", "revoke-previous", "none"]


@dataclass(frozen=True)
class CredentialPlan:
    """The next step for one principal and the status it leads to once applied."""

    step: Step
    username: str  # the credential the Secret should hold after the step
    generation: int
    revoke_username: str | None = None  # set for revoke-previous (and a stale leftover)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime:
    """An RFC 3339 time as written in status (naive times are taken as UTC)."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def plan_credential(
    base: str,
    current: PrincipalStatus | None,
    now: datetime,
    rotate_requested: bool,
) -> CredentialPlan:
    """Decide the next credential step from the principal's recorded status (`now` in UTC)."""
    if current is None:
        return CredentialPlan("issue", naming.generation_username(base, 1), 1)
    if current.previous_username and current.previous_revoke_at:
        if now >= parse_iso(current.previous_revoke_at):
            return CredentialPlan("revoke-previous", current.username, current.generation, current.previous_username)
        # Mid-grace: never start another rotation, or both generations could be replaced.
        return CredentialPlan("none", current.username, current.generation)
    due = current.next_rotation_at is not None and now >= parse_iso(current.next_rotation_at)
    if due or rotate_requested:
        generation = current.generation + 1
        return CredentialPlan("rotate", naming.generation_username(base, generation), generation)
    return CredentialPlan("none", current.username, current.generation)


def status_after(
    plan: CredentialPlan,
    current: PrincipalStatus | None,
    *,
    name: str,
    role: Literal["producer", "consumer", "listener"],
    secret_name: str,
    now: datetime,
    rotate_every: timedelta,
    grace_period: timedelta,
) -> PrincipalStatus:
    """The principal's status once `plan` has been applied."""
    if plan.step in ("issue", "rotate"):
        return PrincipalStatus(
            name=name,
            role=role,
            secret_name=secret_name,
            username=plan.username,
            generation=plan.generation,
            rotated_at=iso(now),
            next_rotation_at=iso(now + rotate_every),
            previous_username=current.username if plan.step == "rotate" and current else None,
            previous_revoke_at=iso(now + grace_period) if plan.step == "rotate" else None,
        )
    assert current is not None
    if plan.step == "revoke-previous":
        return current.model_copy(update={"previous_username": None, "previous_revoke_at": None})
    return current.model_copy(update={"secret_name": secret_name})


def valid_usernames(status: PrincipalStatus) -> list[str]:
    """Every generation that is valid right now: the current one, and the previous in grace."""
    return [status.username] + ([status.previous_username] if status.previous_username else [])


def next_due(principals: list[PrincipalStatus]) -> datetime | None:
    """The earliest moment a credential step falls due: a rotation or a previous generation's revocation."""
    moments = [
        parse_iso(moment)
        for principal in principals
        for moment in (principal.next_rotation_at, principal.previous_revoke_at)
        if moment
    ]
    return min(moments, default=None)
