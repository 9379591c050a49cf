"""DAG authorization: a DAG decides which namespaces' pipelines may trigger it, through its tags.

The DAG's owner (whoever writes the DAG file) opts in per namespace with the Airflow tag
`eventpipeline:<namespace>`, or for every namespace with `eventpipeline:*`. Nothing is open by
default: a DAG without such a tag accepts no message from any pipeline. In AssetEvent mode an
event reaches every DAG scheduled on the asset, so each of them must carry the tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

AUTHORIZATION_TAG_PREFIX = "eventpipeline:"
ANY_NAMESPACE_TAG = AUTHORIZATION_TAG_PREFIX + "*"

DAG_NOT_AUTHORIZED = "DagNotAuthorized"
DAG_NOT_FOUND = "DagNotFound"


@dataclass(frozen=True)
class Refusal:
    """Why a pipeline may not trigger: a condition reason and a message that says what to fix."""

    reason: str
    message: str


def authorization_tag(namespace: str) -> str:
    """The Airflow tag a DAG carries to accept triggers from pipelines of `namespace`."""
    return AUTHORIZATION_TAG_PREFIX + namespace


def dag_authorized(namespace: str, tags: Iterable[str]) -> bool:
    """Whether a DAG with these tags accepts triggers from pipelines of `namespace`."""
    wanted = {authorization_tag(namespace), ANY_NAMESPACE_TAG}
    return any(tag in wanted for tag in tags)


def check_dag(namespace: str, dag_id: str, tags: Iterable[str] | None) -> Refusal | None:
    """None when the DAG may be triggered from `namespace`; `tags` None means the DAG does not exist."""
    if tags is None:
        return Refusal(
            DAG_NOT_FOUND,
            f"Airflow has no DAG {dag_id!r}; deploy it (with the tag {authorization_tag(namespace)!r}) "
            "or fix airflow.trigger.dagId",
        )
    if dag_authorized(namespace, tags):
        return None
    return Refusal(DAG_NOT_AUTHORIZED, _missing_tag_message(namespace, [dag_id]))


def check_asset_consumers(
    namespace: str, asset_uri: str, consumers: Sequence[tuple[str, Iterable[str]]] | None
) -> Refusal | None:
    """None when every DAG scheduled on the asset accepts `namespace`; `consumers` is
    (dag_id, tags) per scheduled DAG, None when Airflow has no such asset."""
    if consumers is None:
        return Refusal(
            DAG_NOT_FOUND,
            f"Airflow has no asset {asset_uri!r}; deploy a DAG scheduled on it "
            f"(with the tag {authorization_tag(namespace)!r}) or fix airflow.trigger.assetUri",
        )
    refusing = sorted(dag_id for dag_id, tags in consumers if not dag_authorized(namespace, tags))
    if not refusing:
        return None
    return Refusal(
        DAG_NOT_AUTHORIZED,
        f"asset {asset_uri!r}: " + _missing_tag_message(namespace, refusing) + " (every DAG scheduled on the "
        "asset receives the events)",
    )


def _missing_tag_message(namespace: str, dag_ids: Sequence[str]) -> str:
    tag = authorization_tag(namespace)
    which = ", ".join(repr(dag_id) for dag_id in dag_ids)
    if len(dag_ids) == 1:
        subject, add_to = f"DAG {which} does", "it"
    else:
        subject, add_to = f"DAGs {which} do", "each"
    return (
        f"{subject} not accept triggers from namespace {namespace!r}; the DAG owner adds the tag "
        f"{tag!r} to {add_to} (or {ANY_NAMESPACE_TAG!r} to accept every namespace)"
    )
