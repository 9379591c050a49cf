"""Who owns what: the names of ownership claims and the decision a claim lookup leads to.

Pure: the claims themselves are read and written by `adapters/claims.py`. See `api/claim.py`
for why ownership is recorded in claims and never in a pipeline's status.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from eventpipeline.api.claim import ClaimingPipeline, ClaimKind, OwnershipClaimSpec

# Topics and dead-letter topics share one name space on a broker: pipeline `x.dlq`'s topic is
# pipeline `x`'s dead-letter topic, so both kinds are claimed under the same key.
_CLAIM_SPACE: dict[ClaimKind, str] = {
    "Topic": "topic",
    "DeadLetterTopic": "topic",
    "Principal": "principal",
    "AirflowConnection": "connection",
    "Schema": "schema",
}


def claim_name(kind: ClaimKind, system: str, name: str) -> str:
    """The claim object's name: one per (name space, system, object name), so a second claim fails."""
    digest = hashlib.sha256(f"{system}\0{name}".encode()).hexdigest()[:40]
    return f"{_CLAIM_SPACE[kind]}.{digest}"


def describe(pipeline: ClaimingPipeline) -> str:
    return f"{pipeline.namespace}/{pipeline.name}"


@dataclass(frozen=True)
class ClaimDecision:
    """What a pipeline may do with an object: it is `mine`, `free` to claim, or `taken`."""

    verdict: Literal["mine", "free", "taken"]
    owner: str | None = None  # namespace/name of the owner when taken


def decide(existing: OwnershipClaimSpec | None, me: ClaimingPipeline, owner_alive: bool = True) -> ClaimDecision:
    """Ownership is by uid: a pipeline recreated under the same name is a different owner.

    A claim whose pipeline no longer exists (`owner_alive` False: its deletion was abandoned or
    its finalizer removed by hand) is free again, so a name is never blocked for good.
    """
    if existing is None:
        return ClaimDecision("free")
    if existing.pipeline.uid == me.uid:
        return ClaimDecision("mine")
    if not owner_alive:
        return ClaimDecision("free", describe(existing.pipeline))
    return ClaimDecision("taken", describe(existing.pipeline))
