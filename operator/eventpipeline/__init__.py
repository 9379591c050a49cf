"""EventPipeline operator: Kafka or Pulsar topics wired to Airflow DAG runs."""

__version__ = "0.1.0"
