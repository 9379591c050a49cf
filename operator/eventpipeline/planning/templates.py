"""Name templates that keep tenants apart: one namespace can never render or claim another's names.

A Kubernetes namespace is a DNS label (`[a-z0-9-]`). In `{namespace}.{name}` the `.` after the
namespace is a character no namespace contains, so the rendered text up to and including it
names exactly one namespace, whatever `{name}` holds. `{namespace}-{name}` has no such
boundary: namespace `a` with name `b-c` renders the topic of namespace `a-b`, name `c`.

The same rules are CEL validations on the Broker models (refused at admission); this module says
why a template fails, for messages and tests.
"""

from __future__ import annotations

import re

from eventpipeline.api.broker import NAMESPACE_TEMPLATE_PATTERN, TOPIC_TEMPLATE_PATTERN

# Characters a Kubernetes namespace name cannot contain but a topic name can.
NAMESPACE_DELIMITERS = (".", "_")
NAMESPACE_PLACEHOLDER = "{namespace}"
NAME_PLACEHOLDER = "{name}"


def topic_template_problem(template: str) -> str | None:
    """None when `template` keeps namespaces apart, else what is wrong with it and how to fix it."""
    if re.fullmatch(TOPIC_TEMPLATE_PATTERN, template) is not None:
        return None
    example = "{namespace}.{name}"
    if template.count(NAMESPACE_PLACEHOLDER) != 1 or template.count(NAME_PLACEHOLDER) != 1:
        return f"topicTemplate {template!r} must contain {{namespace}} and {{name}} once each, e.g. {example!r}"
    before_name, _, _ = template.partition(NAME_PLACEHOLDER)
    if NAMESPACE_PLACEHOLDER not in before_name:
        return f"topicTemplate {template!r} must put {{namespace}} before {{name}}, e.g. {example!r}"
    after_namespace = template.partition(NAMESPACE_PLACEHOLDER)[2]
    if not after_namespace or after_namespace[0] not in NAMESPACE_DELIMITERS:
        return (
            f"topicTemplate {template!r} must follow {{namespace}} with '.' or '_', characters no "
            f"namespace name contains; otherwise namespace 'a' could take the names of namespace 'a-b'. "
            f"Use e.g. {example!r}"
        )
    return f"topicTemplate {template!r} may hold only the placeholders and the characters [a-zA-Z0-9._-]"


def namespace_template_problem(template: str) -> str | None:
    """None when a Pulsar `namespaceTemplate` gives each Kubernetes namespace its own Pulsar namespace."""
    if re.fullmatch(NAMESPACE_TEMPLATE_PATTERN, template) is not None:
        return None
    return (
        f"namespaceTemplate {template!r} must contain {{namespace}} once and otherwise only the "
        "characters [a-zA-Z0-9._-], e.g. '{namespace}'"
    )


def render_topic(template: str, namespace: str, name: str) -> str:
    """The topic a valid template gives (`name` is the pipeline's chosen part); plain substitution,
    never `str.format`, so a template cannot reach attributes of its arguments."""
    return template.replace(NAMESPACE_PLACEHOLDER, namespace).replace(NAME_PLACEHOLDER, name)


def namespace_prefix(template: str, namespace: str) -> str:
    """The rendered start of every topic of `namespace`: fixed text, the namespace, the delimiter.
    For a valid template no other namespace's topic starts with it."""
    head, _, rest = template.partition(NAMESPACE_PLACEHOLDER)
    return head + namespace + rest[:1]
