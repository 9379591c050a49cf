"""The local stack: real kube-apiserver, Kafka, Pulsar and Airflow as local processes."""
