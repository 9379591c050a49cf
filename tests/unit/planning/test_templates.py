import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from eventpipeline.api.broker import BrokerSpec
from eventpipeline.planning import naming
from eventpipeline.planning.templates import (
    namespace_prefix,
    namespace_template_problem,
    render_topic,
    topic_template_problem,
)

NAMESPACES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
NAMES = st.from_regex(r"[a-zA-Z0-9._-]{1,30}", fullmatch=True)
FIXED_TEXT = st.from_regex(r"[a-zA-Z0-9._-]{0,6}", fullmatch=True)
VALID_TEMPLATES = st.builds(
    lambda head, delimiter, middle, tail: f"{head}{{namespace}}{delimiter}{middle}{{name}}{tail}",
    FIXED_TEXT,
    st.sampled_from([".", "_"]),
    FIXED_TEXT,
    FIXED_TEXT,
)
# Any text built from placeholders and topic characters, valid or not: the validator decides.
ANY_TEMPLATES = st.lists(st.sampled_from(["{namespace}", "{name}", ".", "_", "-", "a", "0"]), max_size=8).map("".join)


@st.composite
def two_namespaces(draw: st.DrawFn) -> tuple[str, str]:
    """Two different namespaces, often one extending the other (`a` and `a-b`), the hostile case."""
    first = draw(NAMESPACES)
    second = draw(st.one_of(NAMESPACES, NAMESPACES.map(lambda rest: f"{first}-{rest}")))
    assume(first != second)
    return (first, second) if draw(st.booleans()) else (second, first)


def kafka_broker(**extra: object) -> dict[str, object]:
    return {"type": "Kafka", "kafka": {"bootstrapServers": "k:9092", "adminSecretRef": {"name": "a"}}, **extra}


@pytest.mark.parametrize("template", ["{namespace}.{name}", "{namespace}_{name}", "t.{namespace}.x-{name}.v1"])
def test_delimited_templates_are_accepted(template: str) -> None:
    assert topic_template_problem(template) is None
    BrokerSpec.model_validate(kafka_broker(topicTemplate=template))


@pytest.mark.parametrize(
    ("template", "hint"),
    [
        ("{namespace}-{name}", "'.' or '_'"),
        ("{namespace}{name}", "'.' or '_'"),
        ("{name}.{namespace}", "before {name}"),
        ("{name}", "once each"),
        ("{namespace}.{name}.{name}", "once each"),
        ("{namespace}.{name.__class__}", "once each"),
        ("{namespace}.{name}/x", "only the placeholders"),
    ],
)
def test_templates_that_let_namespaces_overlap_are_refused(template: str, hint: str) -> None:
    problem = topic_template_problem(template)
    assert problem is not None
    assert hint in problem
    with pytest.raises(ValidationError):
        BrokerSpec.model_validate(kafka_broker(topicTemplate=template))


def test_a_dash_template_really_lets_one_namespace_take_anothers_names() -> None:
    assert render_topic("{namespace}-{name}", "a", "b-c") == render_topic("{namespace}-{name}", "a-b", "c")


def test_pulsar_namespace_template_needs_the_namespace() -> None:
    assert namespace_template_problem("{namespace}") is None
    assert namespace_template_problem("team-{namespace}") is None
    assert namespace_template_problem("shared") is not None
    assert namespace_template_problem("{namespace}/x") is not None
    with pytest.raises(ValidationError):
        BrokerSpec.model_validate(
            {
                "type": "Pulsar",
                "pulsar": {
                    "serviceUrl": "pulsar://p:6650",
                    "adminUrl": "http://p:8080",
                    "adminSecretRef": {"name": "a"},
                    "namespaceTemplate": "shared",
                },
            }
        )


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(VALID_TEMPLATES, two_namespaces(), NAMES, NAMES)
def test_valid_templates_never_give_two_namespaces_the_same_topic(
    template: str, namespaces: tuple[str, str], first_name: str, second_name: str
) -> None:
    first, second = namespaces
    assert topic_template_problem(template) is None
    assert render_topic(template, first, first_name) != render_topic(template, second, second_name)
    assert not render_topic(template, second, second_name).startswith(namespace_prefix(template, first))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(VALID_TEMPLATES, NAMESPACES, NAMES, NAMES)
def test_valid_templates_give_different_names_different_topics(
    template: str, namespace: str, first_name: str, second_name: str
) -> None:
    assume(first_name != second_name)
    assert render_topic(template, namespace, first_name) != render_topic(template, namespace, second_name)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(VALID_TEMPLATES, ANY_TEMPLATES), two_namespaces(), NAMES)
def test_a_template_the_validator_accepts_never_matches_another_namespaces_topic(
    template: str, namespaces: tuple[str, str], name: str
) -> None:
    assume(topic_template_problem(template) is None)
    owner, other = namespaces
    topic = render_topic(template, other, name)
    assert naming.matches_template(template, other, topic)
    assert not naming.matches_template(template, owner, topic)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_TEMPLATES)
def test_the_validator_and_the_admission_rule_agree(template: str) -> None:
    accepted = topic_template_problem(template) is None
    try:
        BrokerSpec.model_validate(kafka_broker(topicTemplate=template))
    except ValidationError:
        assert not accepted
    else:
        assert accepted
