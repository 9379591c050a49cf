"""The metadata Airflow reads through the `apache_airflow_provider` entry point (`airflow providers list`)."""

from __future__ import annotations

from typing import Any

INTEGRATION = "EventPipeline"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata in the shape Airflow's providers manager validates."""
    return {
        "package-name": "airflow-provider-eventpipeline",
        "name": "EventPipeline",
        "description": "Kafka and Pulsar topics managed by the EventPipeline operator: publish from tasks "
        "with the operator's rotated credentials, read the triggering message, and watch Pulsar topics.",
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["eventpipeline_provider.hooks.kafka", "eventpipeline_provider.hooks.pulsar"],
            }
        ],
        "operators": [
            {"integration-name": INTEGRATION, "python-modules": ["eventpipeline_provider.operators.publish"]}
        ],
        "sensors": [{"integration-name": INTEGRATION, "python-modules": ["eventpipeline_provider.sensors.pulsar"]}],
        "triggers": [{"integration-name": INTEGRATION, "python-modules": ["eventpipeline_provider.triggers.pulsar"]}],
        # Kafka connections keep Airflow's own `kafka` type (the Kafka provider registers it).
        # Pulsar has no provider in Airflow: this one registers the `pulsar` type. The operator's
        # connections are `generic`; the hook reads both.
        "connection-types": [
            {
                "hook-class-name": "eventpipeline_provider.hooks.pulsar.PulsarHook",
                "connection-type": "pulsar",
                "hook-name": "Pulsar (EventPipeline)",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {"host": "Service URL", "login": "Role", "password": "Token"},
                    "placeholders": {
                        "host": "pulsar+ssl://pulsar.example:6651",
                        "extra": '{"ca.crt": "-----BEGIN CERTIFICATE-----..."}',
                    },
                },
            }
        ],
    }
