"""A namespace's claims listed once and kept current by the operator's own writes (NamespaceViews),
and each pipeline's (ClaimViews of `Packed` claims)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client

from eventpipeline.adapters.claims import (
    LIST_PAGE,
    ClaimViews,
    KubeClaims,
    NamespaceViews,
    Packed,
    StoredClaim,
    TopicShare,
)
from eventpipeline.api.claim import ClaimingPipeline, ClaimKind, OwnershipClaimSpec
from eventpipeline.api.common import wire


def claim(name: str, namespace: str = "shop", partitions: int = 1, kind: ClaimKind = "Topic") -> StoredClaim:
    pipeline = ClaimingPipeline(namespace=namespace, name="orders", uid=f"uid-{namespace}")
    spec = OwnershipClaimSpec(kind=kind, system="ClusterBroker//kafka", name=name, pipeline=pipeline)
    return StoredClaim(name, spec.model_copy(update={"partitions": partitions}), "1")


class Server:
    """What the API server holds, by namespace; counts the listings."""

    def __init__(self, *claims: StoredClaim) -> None:
        self.claims = {c.name: c for c in claims}
        self.listings = 0

    def list(self, namespace: str) -> list[StoredClaim]:
        self.listings += 1
        return [c for c in self.claims.values() if c.spec.pipeline.namespace == namespace]


def names(claims: list[TopicShare] | list[Packed]) -> set[str]:
    return {c.claim if isinstance(c, TopicShare) else c.name for c in claims}


def test_a_namespace_is_listed_once_per_period_and_our_writes_show_in_between() -> None:
    server = Server(claim("a"), claim("other", namespace="elsewhere"))
    now = [0.0]
    views = NamespaceViews(server.list, max_age=60, clock=lambda: now[0])
    assert names(views.claims("shop")) == {"a"}
    views.written(claim("b"))
    views.written(claim("a", partitions=6))
    assert names(views.claims("shop")) == {"a", "b"}
    assert {c.claim: c.partitions for c in views.claims("shop")} == {"a": 6, "b": 1}
    views.deleted("b")
    assert names(views.claims("shop")) == {"a"}
    assert server.listings == 1


def test_a_namespace_view_keeps_only_what_its_quota_reads_of_its_topics() -> None:
    server = Server(claim("t", partitions=4), claim("p", kind="Principal"), claim("c", kind="AirflowConnection"))
    views = NamespaceViews(server.list, max_age=60, clock=lambda: 0.0)
    assert views.claims("shop") == [TopicShare("t", "ClusterBroker//kafka", "uid-shop", 4)]
    views.written(claim("p2", kind="Principal"))
    views.written(claim("t2"))
    assert names(views.claims("shop")) == {"t", "t2"}
    views.deleted("p")  # never kept: nothing to drop, the view stays
    assert names(views.claims("shop")) == {"t", "t2"}
    assert server.listings == 1


def test_after_the_period_the_namespace_is_listed_again() -> None:
    server = Server(claim("a"))
    now = [0.0]
    views = NamespaceViews(server.list, max_age=60, clock=lambda: now[0])
    views.claims("shop")
    server.claims["c"] = claim("c")  # written by someone else (another replica)
    now[0] = 61
    assert names(views.claims("shop")) == {"a", "c"}
    assert server.listings == 2


def test_a_claim_adopted_into_another_namespace_leaves_the_old_one() -> None:
    server = Server(claim("a"))
    views = NamespaceViews(server.list, max_age=60, clock=lambda: 0.0)
    views.claims("shop")
    views.claims("elsewhere")
    views.written(claim("a", namespace="elsewhere"))
    assert names(views.claims("shop")) == set()
    assert names(views.claims("elsewhere")) == {"a"}


def test_writes_made_while_a_listing_runs_are_not_lost() -> None:
    views: NamespaceViews
    server = Server(claim("a"), claim("gone"))

    def list_while_others_write(namespace: str) -> list[StoredClaim]:
        listed = server.list(namespace)  # the answer predates the writes below
        views.written(claim("new"))
        views.deleted("gone")
        return listed

    views = NamespaceViews(list_while_others_write, max_age=60, clock=lambda: 0.0)
    assert names(views.claims("shop")) == {"a", "new"}
    assert names(views.claims("shop")) == {"a", "new"}
    assert server.listings == 1


def test_a_failed_listing_is_not_kept() -> None:
    calls = []

    def failing(namespace: str) -> list[StoredClaim]:
        calls.append(namespace)
        if len(calls) == 1:
            raise RuntimeError("API server unavailable")
        return [claim("a")]

    views = NamespaceViews(failing, max_age=60, clock=lambda: 0.0)
    with pytest.raises(RuntimeError):
        views.claims("shop")
    assert names(views.claims("shop")) == {"a"}


def test_by_pipeline_every_run_lists_and_a_drift_check_takes_that_listing_with_our_writes_since() -> None:
    server = Server(claim("a"), claim("other", namespace="elsewhere"))
    now = [0.0]
    listings: list[str] = []

    def listing(uid: str) -> list[StoredClaim]:
        listings.append(uid)
        return [c for c in server.claims.values() if c.spec.pipeline.uid == uid]

    by_uid = ClaimViews(
        listing,
        lambda spec: spec.pipeline.uid,
        0.0,
        Packed.of,
        clock=lambda: now[0],
    )
    assert names(by_uid.claims("uid-shop")) == {"a"}  # a run outside drift checks lists
    assert names(by_uid.claims("uid-shop")) == {"a"}
    by_uid.written(claim("b", partitions=3))
    now[0] = 250
    assert names(by_uid.claims("uid-shop", max_age=3000)) == {"a", "b"}  # a drift check
    # kept as JSON, given back as the same claims
    given = {c.name: c.unpacked() for c in by_uid.claims("uid-shop", max_age=3000)}
    assert given == {"a": claim("a"), "b": claim("b", partitions=3)}
    assert listings == ["uid-shop", "uid-shop"] and len(by_uid) == 1
    by_uid.deleted("a")
    by_uid.deleted("b")
    server.claims = {}
    assert names(by_uid.claims("uid-shop", max_age=3000)) == set()  # its last claim gone: listed again


def test_a_slow_listing_of_one_pipeline_does_not_hold_up_another() -> None:
    release = threading.Event()

    def listing(uid: str) -> list[StoredClaim]:
        if uid == "slow":
            assert release.wait(timeout=10)
        return []

    by_uid = ClaimViews(listing, lambda spec: spec.pipeline.uid, 0.0, Packed.of)
    slow = threading.Thread(target=by_uid.claims, args=("slow",))
    slow.start()
    try:
        assert by_uid.claims("quick") == []
        assert slow.is_alive()  # behind one lock for every key, the quick one would have waited for it
    finally:
        release.set()
        slow.join(timeout=10)


class PagedServer:
    """The API server's chunked list of cluster-scoped claims: `limit` items, then a continue token."""

    def __init__(self, claims: list[StoredClaim]) -> None:
        self.items = [
            {"metadata": {"name": c.name, "resourceVersion": c.resource_version}, "spec": wire(c.spec)} for c in claims
        ]
        self.calls: list[tuple[int, str | None]] = []

    def list_cluster_custom_object(
        self,
        group: str,
        version: str,
        plural: str,
        *,
        label_selector: str,
        limit: int | None = None,
        _continue: str | None = None,
    ) -> dict[str, Any]:
        self.calls.append((limit, _continue))
        start = int(_continue or 0)
        end = start + (limit or len(self.items))
        token = str(end) if end < len(self.items) else None
        return {"items": self.items[start:end], "metadata": {"continue": token} if token else {}}


def test_a_namespace_is_listed_page_by_page_and_only_its_topics_are_kept() -> None:
    many = [claim(f"t{i:04d}", partitions=2) for i in range(600)] + [
        claim(f"p{i:04d}", kind="Principal") for i in range(600)
    ]
    server = PagedServer(many)
    store = KubeClaims(client.ApiClient())
    store._custom = server  # type: ignore[assignment]
    topics = store.topics_in_namespace("shop")
    assert len(topics) == 600 and sum(t.partitions for t in topics) == 1200
    assert server.calls == [(LIST_PAGE, None), (LIST_PAGE, "500"), (LIST_PAGE, "1000")]
    # A pipeline's own claims: one call without a limit (answered from the API server's watch cache).
    server.calls.clear()
    assert len(store.owned_by("uid-shop")) == 1200
    assert server.calls == [(None, None)]
