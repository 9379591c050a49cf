"""What the controller hands the trigger listener, in the Secret `listener.<namespace>.<pipeline>`
of the listener's own namespace (`naming.listener_secret_name`).

The Secret is a flat map of strings: the listener principal's credential in the broker client's
own keys (`planning.secrets`), plus the keys below. Everything identity-like the listener acts on
comes from here — the topic it consumes, its dead-letter topic, the broker type, and the Airflow
API and credential it triggers with — never from the pipeline's status, which its namespace can
patch, and never from a Secret outside the listener's namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import SecretStr

TOPIC_KEY = "topic"
DEAD_LETTER_TOPIC_KEY = "deadLetterTopic"
BROKER_TYPE_KEY = "brokerType"
AIRFLOW_URL_KEY = "airflow.apiUrl"
AIRFLOW_USERNAME_KEY = "airflow.username"
AIRFLOW_PASSWORD_KEY = "airflow.password"  # noqa: S105 - a key's name, not a password
# Pulsar's admin REST API: the listener reads its own subscription's backlog there (topic stats,
# which Pulsar lets a role with `consume` on the topic read), since the client protocol has no lag.
PULSAR_ADMIN_URL_KEY = "pulsar.adminUrl"

# The keys the controller derives from the pipeline's records and references (not the credential).
DESCRIPTION_KEYS = frozenset(
    {
        TOPIC_KEY,
        DEAD_LETTER_TOPIC_KEY,
        BROKER_TYPE_KEY,
        AIRFLOW_URL_KEY,
        AIRFLOW_USERNAME_KEY,
        AIRFLOW_PASSWORD_KEY,
        PULSAR_ADMIN_URL_KEY,
    }
)


@dataclass(frozen=True)
class AirflowAccess:
    """Where the listener triggers runs, and as whom (the Airflow instance's credential)."""

    api_url: str
    username: str
    password: SecretStr


def describe(
    topic: str,
    dead_letter_topic: str | None,
    broker_type: str,
    airflow: AirflowAccess | None,
    *,
    pulsar_admin_url: str | None = None,
) -> dict[str, str]:
    """The hand-off keys besides the credential; the Airflow ones only while the pipeline may use it."""
    fields = {TOPIC_KEY: topic, BROKER_TYPE_KEY: broker_type}
    if dead_letter_topic is not None:
        fields[DEAD_LETTER_TOPIC_KEY] = dead_letter_topic
    if pulsar_admin_url is not None:
        fields[PULSAR_ADMIN_URL_KEY] = pulsar_admin_url
    if airflow is not None:
        fields |= {
            AIRFLOW_URL_KEY: airflow.api_url,
            AIRFLOW_USERNAME_KEY: airflow.username,
            AIRFLOW_PASSWORD_KEY: airflow.password.get_secret_value(),
        }
    return fields


def with_description(data: Mapping[str, str], description: Mapping[str, str]) -> dict[str, str]:
    """`data` (a credential, or a hand-off already written) with its description replaced by `description`."""
    kept = {key: value for key, value in data.items() if key not in DESCRIPTION_KEYS}
    return {**kept, **description}


def description_of(data: Mapping[str, str]) -> dict[str, str]:
    """The description keys a hand-off holds."""
    return {key: value for key, value in data.items() if key in DESCRIPTION_KEYS}


def airflow_access(data: Mapping[str, str]) -> AirflowAccess | None:
    """The Airflow API and credential handed over, or None while there is none."""
    url, username, password = (data.get(key) for key in (AIRFLOW_URL_KEY, AIRFLOW_USERNAME_KEY, AIRFLOW_PASSWORD_KEY))
    if not url or not username or password is None:
        return None
    return AirflowAccess(url, username, SecretStr(password))
