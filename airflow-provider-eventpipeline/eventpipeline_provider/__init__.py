"""Airflow provider for topics managed by the EventPipeline operator (Kafka and Pulsar).

Importing this package imports no Airflow and no broker client: the pure parts (`message`,
`connections`, `serialization`) are usable and tested without them.
"""

__version__ = "0.1.0"
