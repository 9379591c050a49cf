"""A pipeline's ownership claims during one reconciliation: listed once, taken, saved, released."""

from __future__ import annotations

from collections.abc import Mapping

from eventpipeline.adapters.claims import StoredClaim
from eventpipeline.api.claim import ClaimingPipeline, ClaimKind, OwnershipClaimSpec
from eventpipeline.planning.ownership import claim_name, decide
from eventpipeline.reconciler.ports import ClaimStore, ClusterState


class ClaimTakenError(Exception):
    """The object belongs to another pipeline or existed before; the pipeline must leave it alone."""

    def __init__(self, owner: str) -> None:
        super().__init__(owner)
        self.owner = owner


class ClaimBook:
    """The claims of one pipeline. Taking a claim is creating it: the API server keeps it unique."""

    def __init__(self, store: ClaimStore, cluster: ClusterState, me: ClaimingPipeline) -> None:
        self._store = store
        self._cluster = cluster
        self._me = me
        self._claims = {claim.name: claim for claim in store.owned_by(me.uid)}

    def owned(self, *kinds: ClaimKind) -> list[StoredClaim]:
        return sorted(
            (claim for claim in self._claims.values() if not kinds or claim.spec.kind in kinds),
            key=lambda claim: (claim.spec.kind, claim.spec.name),
        )

    def find(self, kind: ClaimKind, system: str, name: str) -> StoredClaim | None:
        return self._claims.get(claim_name(kind, system, name))

    def take(
        self,
        kind: ClaimKind,
        system: str,
        name: str,
        principal: str | None = None,
        *,
        facts: Mapping[str, object] | None = None,
    ) -> StoredClaim:
        """This pipeline's claim on the object, taken now if nobody holds it.

        Raises ClaimTakenError when another live pipeline holds it. A claim left by a pipeline
        that no longer exists is adopted. `facts` (fields of the claim's spec) are recorded in a
        claim taken or adopted now, so that a new object costs one write of its claim instead of
        a create and an update; a claim the pipeline already holds is returned as it is (the
        caller saves what changed). Each caller says why its facts are safe to record before
        the object exists.
        """
        key = claim_name(kind, system, name)
        if key in self._claims:
            return self._claims[key]
        spec = OwnershipClaimSpec(kind=kind, system=system, name=name, pipeline=self._me, principal=principal)
        if facts:
            spec = spec.model_copy(update=dict(facts))
        for _ in range(2):  # a claim released between our create and get is simply taken again
            created = self._store.create(key, spec)
            if created is not None:
                self._claims[key] = created
                return created
            existing = self._store.get(key)
            if existing is None:
                continue
            holder = existing.spec.pipeline
            alive = self._cluster.pipeline_uid(holder.namespace, holder.name) == holder.uid
            decision = decide(existing.spec, self._me, owner_alive=alive)
            if decision.verdict == "taken":
                raise ClaimTakenError(decision.owner or "another pipeline")
            adopted = self._store.update(StoredClaim(key, spec, existing.resource_version))
            self._claims[key] = adopted
            return adopted
        raise ClaimTakenError("another pipeline")

    def partitions_of_others(self, system: str, besides: str | None = None) -> int:
        """Partitions of the namespace's other topics on a broker (retained ones included).

        `besides`: a topic this pipeline is about to claim; a claim on it (a retained topic's,
        left by a deleted pipeline) is not counted, since taking it makes it this pipeline's."""
        skipped = None if besides is None else claim_name("Topic", system, besides)
        return sum(
            topic.partitions
            for topic in self._store.topics_in_namespace(self._me.namespace)
            if topic.system == system and topic.pipeline_uid != self._me.uid and topic.claim != skipped
        )

    def exists_anywhere(self, kind: ClaimKind, system: str, name: str) -> bool:
        """Whether any pipeline (alive or not) holds a claim on the object."""
        key = claim_name(kind, system, name)
        return key in self._claims or self._store.get(key) is not None

    def save(self, claim: StoredClaim, spec: OwnershipClaimSpec) -> StoredClaim:
        """Record new facts in an owned claim (written only when they changed)."""
        if spec == claim.spec:
            return claim
        saved = self._store.update(StoredClaim(claim.name, spec, claim.resource_version))
        self._claims[claim.name] = saved
        return saved

    def release(self, claim: StoredClaim) -> None:
        """The object is gone (or no longer this pipeline's): forget the claim."""
        self._store.delete(claim.name)
        self._claims.pop(claim.name, None)
