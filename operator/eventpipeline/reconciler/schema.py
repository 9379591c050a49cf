"""The schema part: claim the subject, check compatibility, register, repair drift, hand over.

observe: the pipeline's Schema claim (the versions the operator registered) and what the
registry holds for the subject (Kafka: `<topic>-value` in the broker's Confluent-compatible
registry) or topic (Pulsar: the broker's own registry);
plan: `planning.schema.plan_schema` — settings, drift to remove, whether to register;
apply: a changed definition is checked against the registry first and registered only if
compatible, otherwise the registered schema stays; outcome: `SchemaReady`.

A refusal here does not stop the other parts: credentials keep rotating and the listener keeps
running with the schema versions that are registered.
"""

from __future__ import annotations

from eventpipeline.adapters.claims import StoredClaim
from eventpipeline.adapters.errors import AdapterError, SchemaIncompatibleError
from eventpipeline.adapters.kube import PIPELINE_LABEL, PRINCIPAL_LABEL
from eventpipeline.api.claim import SchemaVersionRecord
from eventpipeline.api.pipeline import LISTENER_PRINCIPAL, SCHEMA_DEFINITION_MAX_LENGTH, SchemaSpec, SchemaStatus
from eventpipeline.planning import naming
from eventpipeline.planning.clock import iso
from eventpipeline.planning.schema import (
    REGISTRY_CLIENT_KEYS,
    DesiredSchema,
    ObservedSchemas,
    RegisteredVersion,
    fingerprint,
    handed_schemas,
    plan_schema,
)
from eventpipeline.planning.schema_versions import SCHEMAS_KEY
from eventpipeline.reconciler.claims import ClaimBook, ClaimTakenError
from eventpipeline.reconciler.credentials import ListenerHandoff
from eventpipeline.reconciler.ports import BrokerTarget, ClusterState, Resolver, SchemaStore
from eventpipeline.reconciler.run import Run, StepFailedError
from eventpipeline.reconciler.topic import PipelineTopic

CONDITION = "SchemaReady"


class SchemaStep:
    """One run of the schema part for one pipeline."""

    def __init__(
        self,
        run: Run,
        claims: ClaimBook,
        broker: BrokerTarget,
        cluster: ClusterState,
        resolver: Resolver,
        *,
        handoff: ListenerHandoff,
    ) -> None:
        self._run = run
        self._claims = claims
        self._broker = broker
        self._cluster = cluster
        self._resolver = resolver
        self._handoff = handoff

    def reconcile(self, topic: PipelineTopic) -> None:
        """Converge the registry; a failure is recorded as `SchemaReady=False`, never raised."""
        spec = self._run.pipeline.spec.schema_
        try:
            if spec is None:
                self._hand_over([])
                return
            self._reconcile(spec, topic)
        except StepFailedError:
            return
        except AdapterError as error:
            self._run.fail(CONDITION, error.reason, str(error))

    def _reconcile(self, spec: SchemaSpec, topic: PipelineTopic) -> None:
        run = self._run
        desired = DesiredSchema(spec.type, self._definition(spec), spec.compatibility)
        store = self._broker.schemas
        if store is None:
            raise run.fail(
                CONDITION,
                "SchemaRegistryMissing",
                f"broker {self._broker.key} declares no schemaRegistry; ask its owner to set "
                "spec.kafka.schemaRegistry, or remove spec.schema",
            )
        subject = store.subject_for(topic.name)
        observed = store.observe(subject, desired)
        claim = self._claim(subject, observed)
        records = list(claim.spec.schema_versions)
        plan = plan_schema(desired, observed, records, removes_single_versions=store.removes_single_versions)
        if plan.set_compatibility:
            store.set_compatibility(subject, desired.compatibility)
        store.enforce(subject)
        if plan.reset:
            store.clear(subject)
        elif plan.remove:
            store.remove_versions(subject, plan.remove)
        if plan.notes:
            run.note("Warning", "SchemaDriftRepaired", f"{subject}: {'; '.join(plan.notes)}; repaired")
        held = {item.version: item for item in observed.versions}
        records = [record for record in records if record.version not in plan.forget]
        records += [self._record(held[version], dag_version=None) for version in plan.adopt]
        registered = None
        if plan.register:
            registered, explanation = self._register(store, subject, desired, records, plan.reset)
            if registered is None:
                claim = self._claims.save(claim, claim.spec.model_copy(update={"schema_versions": records}))
                self._report(subject, desired, records, None)
                raise run.fail(
                    CONDITION,
                    "SchemaIncompatible",
                    f"the new schema is not {desired.compatibility}-compatible with what {subject} holds, so it "
                    f"was not registered and producers keep the registered one: {explanation}",
                )
            records.append(self._record(registered, dag_version=self._dag_version()))
        self._claims.save(claim, claim.spec.model_copy(update={"schema_versions": records}))
        changed = plan.register or plan.reset or bool(plan.remove)
        final = store.observe(subject, desired) if changed else observed
        current = registered.version if registered else final.desired_version
        self._report(subject, desired, records, current)
        self._hand_over(list(final.versions))
        self._configure_producers(store.client_settings())
        if registered is not None:
            run.note("Normal", "SchemaRegistered", f"{subject}: registered version {registered.version}")
        run.ok(CONDITION, "SchemaRegistered", f"{subject} holds the schema as version {current}")

    def _definition(self, spec: SchemaSpec) -> str:
        if spec.definition is not None:
            return spec.definition
        ref = spec.config_map_ref
        assert ref is not None  # the CRD requires one of the two
        namespace = self._run.pipeline.namespace
        data = self._cluster.read_config_map(namespace, ref.name)
        if data is None or not data.get(ref.key):
            raise self._run.fail(
                CONDITION,
                "SchemaDefinitionMissing",
                f"ConfigMap {namespace}/{ref.name} has no key {ref.key}; create it or fix schema.configMapRef",
            )
        text = data[ref.key]
        # The same bound as an inline definition: every registered version also travels in the
        # listener's hand-off Secret, which the API server caps at 1 MiB.
        if len(text) > SCHEMA_DEFINITION_MAX_LENGTH:
            raise self._run.fail(
                CONDITION,
                "SchemaDefinitionTooLong",
                f"key {ref.key} of ConfigMap {namespace}/{ref.name} holds {len(text)} characters, more than the "
                f"{SCHEMA_DEFINITION_MAX_LENGTH} a schema may have (inline or from a ConfigMap); shorten it",
            )
        return text

    def _claim(self, subject: str, observed: ObservedSchemas) -> StoredClaim:
        """The pipeline's claim on the subject; one that exists without a claim was not made for it."""
        run, key = self._run, self._broker.key
        unclaimed = self._claims.find("Schema", key, subject) is None
        if unclaimed and observed.versions and not self._claims.exists_anywhere("Schema", key, subject):
            raise run.fail(
                CONDITION,
                "SchemaConflict",
                f"{subject} already holds schemas on {key} that were not registered for a pipeline; "
                "ask the registry's owner to remove them, or use another topic",
            )
        try:
            return self._claims.take("Schema", key, subject)
        except ClaimTakenError as taken:
            raise run.fail(CONDITION, "SchemaConflict", f"{subject} is owned by pipeline {taken.owner}") from taken

    def _register(
        self, store: SchemaStore, subject: str, desired: DesiredSchema, records: list[SchemaVersionRecord], reset: bool
    ) -> tuple[RegisteredVersion | None, str]:
        """Check first (when something is registered), then register; (None, why) when refused."""
        if records and not reset:
            explanation = store.check(subject, desired)
            if explanation is not None:
                return None, explanation
        try:
            return store.register(subject, desired), ""
        except SchemaIncompatibleError as refused:
            return None, refused.explanation

    def _record(self, version: RegisteredVersion, dag_version: int | None) -> SchemaVersionRecord:
        return SchemaVersionRecord(
            version=version.version,
            id=version.id,
            fingerprint=fingerprint(version.definition),
            registered_at=iso(self._run.now),
            dag_version=dag_version,
        )

    def _dag_version(self) -> int | None:
        """The DAG version Airflow reports as current now; None without a DAG or an answer."""
        airflow = self._run.pipeline.spec.airflow
        if airflow is None or airflow.trigger is None or airflow.trigger.mode != "DagRun":
            return None
        try:
            target = self._resolver.airflow(airflow.instance_ref, self._run.pipeline.namespace)
            return target.dags.current_version(airflow.trigger.dag_id)
        except Exception:
            return None

    def _report(
        self, subject: str, desired: DesiredSchema, records: list[SchemaVersionRecord], current: int | None
    ) -> None:
        """status.schema: the version producers use now (the desired one, else the newest recorded)."""
        if not records:
            self._run.report.schema_ = None
            return
        shown = next((record for record in records if record.version == current), records[-1])
        self._run.report.schema_ = SchemaStatus(
            type=desired.type,
            subject=subject,
            version=shown.version,
            id=shown.id,
            fingerprint=shown.fingerprint,
            registered_at=shown.registered_at,
            history=sorted(records, key=lambda record: record.version),
        )

    def _hand_over(self, versions: list[RegisteredVersion]) -> None:
        """The listener's hand-off Secret carries every registered version (key `schemas.json`)."""
        pipeline = self._run.pipeline
        found = self._handoff.read()  # read once per run, shared with the credentials part
        if found is None:
            return  # no listener credential yet: the next run hands the schemas over with it
        value = handed_schemas(versions) if versions else None
        if found.data.get(SCHEMAS_KEY) == value:
            return
        data = {key: item for key, item in found.data.items() if key != SCHEMAS_KEY}
        if value is not None:
            data[SCHEMAS_KEY] = value
        labels = {PIPELINE_LABEL: pipeline.name, PRINCIPAL_LABEL: LISTENER_PRINCIPAL}
        self._cluster.write_secret(self._handoff.namespace, self._handoff.name, data, None, labels)

    def _configure_producers(self, settings: dict[str, str]) -> None:
        """Producer Secrets also tell the serializers where the registry is (Kafka)."""
        if not settings:
            return
        pipeline = self._run.pipeline
        for producer in pipeline.spec.producers:
            name = naming.secret_name(pipeline.name, producer.name)
            found = self._cluster.read_secret(pipeline.namespace, name)
            # Only an intact Secret of this pipeline: an edited one is the credentials part's to repair.
            if found is None or not found.owned_by(pipeline.uid) or not found.unedited():
                continue
            # Registry keys the settings no longer name go: e.g. a registry credential written
            # before clientCredentialsSecretRef existed, or one the broker's owner withdrew.
            kept = {key: value for key, value in found.data.items() if key not in REGISTRY_CLIENT_KEYS}
            desired = {**kept, **settings}
            if desired == found.data:
                continue
            labels = {PIPELINE_LABEL: pipeline.name, PRINCIPAL_LABEL: producer.name}
            self._cluster.write_secret(pipeline.namespace, name, desired, pipeline.owner, labels)
