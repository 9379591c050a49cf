"""Thin kopf handlers: parse the body, call the reconciler, write status and Events.

Importing this package registers every handler with kopf.
"""

import kopf

from eventpipeline.handlers import context, pipeline, referenced, schedule  # noqa: F401

kopf.on.startup()(context.configure)
