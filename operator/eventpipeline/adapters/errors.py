"""Typed adapter errors; each maps to a condition reason a user can act on."""

from __future__ import annotations


class AdapterError(Exception):
    """Something an outside system said or failed to say. `reason` becomes the condition reason."""

    reason = "BackendError"
    # Transient errors are retried with backoff; permanent ones wait for a spec change.
    transient = True


class UnavailableError(AdapterError):
    """The system did not answer (down, timed out, network)."""

    reason = "BackendUnavailable"


class NotAuthorizedError(AdapterError):
    """The operator's own credential was refused: fix the admin Secret of the Broker / Airflow resource."""

    reason = "AdminCredentialRefused"
    transient = False


class InvalidRequestError(AdapterError):
    """The request was refused as invalid (bad topic config, replication factor above broker count)."""

    reason = "InvalidRequest"
    transient = False


class ConflictError(AdapterError):
    """The resource exists and belongs to something else."""

    reason = "ResourceConflict"
    transient = False


class SchemaIncompatibleError(AdapterError):
    """The registry refused a schema under the subject's compatibility rule; `explanation` says why."""

    reason = "SchemaIncompatible"
    transient = False

    def __init__(self, explanation: str) -> None:
        super().__init__(f"the schema registry refused the new schema: {explanation}")
        self.explanation = explanation
