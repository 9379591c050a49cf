"""`eventpipeline run`: the controller process (kopf), in a cluster or locally with a kubeconfig."""

from __future__ import annotations

import asyncio
import logging

import kopf

from eventpipeline import handlers  # noqa: F401  (registers the handlers)


def run(*, peering: str | None, liveness: str | None, verbose: bool) -> None:
    """Run until interrupted. Without `peering`, the operator runs standalone (one replica)."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON, log_prefix=False)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    asyncio.run(
        kopf.operator(
            clusterwide=True,
            standalone=peering is None,
            peering_name=peering or "default",
            liveness_endpoint=liveness,
        )
    )
