"""The trigger part: may this pipeline's namespace trigger the DAG (or post to the asset) it names?

observe: the DAG's tags (or the tags of every DAG scheduled on the asset) from Airflow;
plan: `planning.dag_access` — the DAG owner decides with the tag `eventpipeline:<namespace>`;
outcome: `TriggerAuthorized`. The listener refuses on its own side too; this condition is what
the pipeline's owner reads.
"""

from __future__ import annotations

from eventpipeline.adapters.errors import AdapterError
from eventpipeline.planning.dag_access import check_asset_consumers, check_dag
from eventpipeline.reconciler.ports import Resolver
from eventpipeline.reconciler.run import Run

CONDITION = "TriggerAuthorized"


def reconcile_trigger(run: Run, resolver: Resolver) -> None:
    pipeline = run.pipeline
    airflow = pipeline.spec.airflow
    if airflow is None or airflow.trigger is None:
        return
    trigger = airflow.trigger
    try:
        dags = resolver.airflow(airflow.instance_ref, pipeline.namespace).dags
        if trigger.mode == "AssetEvent" and trigger.asset_uri is not None:
            refusal = check_asset_consumers(
                pipeline.namespace, trigger.asset_uri, dags.asset_consumers(trigger.asset_uri)
            )
            target = f"asset {trigger.asset_uri}"
        else:
            refusal = check_dag(pipeline.namespace, trigger.dag_id, dags.tags(trigger.dag_id))
            target = f"DAG {trigger.dag_id}"
    except AdapterError as error:
        raise run.fail(CONDITION, error.reason, str(error)) from error
    if refusal is not None:
        raise run.fail(CONDITION, refusal.reason, refusal.message)
    run.ok(CONDITION, "TriggerAuthorized", f"{target} accepts triggers from namespace {pipeline.namespace}")
