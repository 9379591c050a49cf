"""Command line: `run` (the controller), `listen` (the listener), `top`, `crds`; `dev …` and `demo` when installed."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from eventpipeline import __version__, crdgen

# Packages that add commands (the development stack's `dev …` and `demo`) register a function
# `add_commands(subparsers)` under this entry point group. The operator never imports them.
COMMANDS_GROUP = "eventpipeline.commands"
DEV_COMMANDS = ("dev", "demo")
NOT_INSTALLED = (
    "`eventpipeline {command}` comes from the development package eventpipeline-devenv, which is not installed "
    "here (the operator's wheel and image do not ship it); in a clone of the repository run `make venv`, "
    "or `pip install -e devtools`"
)


def _not_installed(args: argparse.Namespace) -> int:
    print(f"error: {NOT_INSTALLED.format(command=args.command)}", file=sys.stderr)
    return 2


def _add_installed_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands of installed add-on packages; placeholders that explain what is missing otherwise."""
    for entry in entry_points(group=COMMANDS_GROUP):
        entry.load()(commands)
    for name in DEV_COMMANDS:
        if name not in commands.choices:
            placeholder = commands.add_parser(name, help="(development package not installed)", add_help=False)
            placeholder.add_argument("rest", nargs=argparse.REMAINDER)
            placeholder.set_defaults(handler=_not_installed)


def _crds(args: argparse.Namespace) -> int:
    for path in crdgen.write(Path(args.output)):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    from eventpipeline import controller  # noqa: PLC0415 - kopf loads only for this command

    controller.run(peering=args.peering, liveness=args.liveness, metrics_port=args.metrics_port, verbose=args.verbose)
    return 0


def _listen(args: argparse.Namespace) -> int:
    from eventpipeline import listener  # noqa: PLC0415 - Kafka/Pulsar clients load only for this command
    from eventpipeline.planning.serving import replica_index_from_hostname  # noqa: PLC0415

    index = args.replica_index
    if index is None:
        index = replica_index_from_hostname(os.environ.get("HOSTNAME", "")) or 0
    if not 0 <= index < args.replicas:
        print(f"error: --replica-index {index} is outside 0..{args.replicas - 1}", file=sys.stderr)
        return 2
    for item in args.dedicated:
        if item.count("/") != 1:
            print(f"error: --dedicated {item!r} must be NAMESPACE/NAME", file=sys.stderr)
            return 2
    listener.run(
        replicas=args.replicas,
        replica_index=index,
        dedicated=args.dedicated,
        metrics_port=args.metrics_port,
        status_interval=args.status_interval,
        verbose=args.verbose,
    )
    return 0


def _top(args: argparse.Namespace) -> int:
    from eventpipeline import top  # noqa: PLC0415

    if not args.prometheus:
        print("error: give --prometheus URL (or set $PROMETHEUS_URL, as `eventpipeline dev env` does)", file=sys.stderr)
        return 2
    return top.run(args.prometheus, window=args.window, watch=args.watch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventpipeline", description=__doc__)
    parser.add_argument("--version", action="version", version=f"eventpipeline {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the controller (uses $KUBECONFIG or the in-cluster account)")
    run.add_argument("--peering", help="kopf peering name; set when running several replicas")
    run.add_argument("--liveness", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--metrics-port", type=int, default=9101, help="Prometheus metrics port; 0 turns it off")
    run.add_argument("--verbose", action="store_true")
    run.set_defaults(handler=_run)

    listen = commands.add_parser(
        "listen", help="run the trigger listener: one DAG run per message (uses $KUBECONFIG or the in-cluster account)"
    )
    listen.add_argument(
        "--replicas",
        type=int,
        default=int(os.environ.get("EVENTPIPELINE_LISTENER_REPLICAS", "1")),
        help="listener replicas sharing the pipelines (default: $EVENTPIPELINE_LISTENER_REPLICAS or 1)",
    )
    listen.add_argument(
        "--replica-index",
        type=int,
        default=None,
        help="this replica's index (default: the pod ordinal at the end of $HOSTNAME, else 0)",
    )
    listen.add_argument(
        "--dedicated",
        action="append",
        default=[],
        metavar="NAMESPACE/NAME",
        help="serve only this pipeline (repeatable); for pipelines with listener.dedicated: true",
    )
    listen.add_argument("--metrics-port", type=int, default=9102, help="Prometheus metrics port (0: none)")
    listen.add_argument(
        "--status-interval", type=float, default=5.0, help="seconds between status.listener writes of a pipeline"
    )
    listen.add_argument("--verbose", action="store_true")
    listen.set_defaults(handler=_listen)

    top = commands.add_parser(
        "top", help="key figures per pipeline from Prometheus (lag, runs/s, retries, DLQ, rotation) as a table"
    )
    top.add_argument("--prometheus", default=os.environ.get("PROMETHEUS_URL"), help="base URL ($PROMETHEUS_URL)")
    top.add_argument("--window", default="5m", help="range of the rates (PromQL duration, default 5m)")
    top.add_argument("--watch", type=float, default=None, metavar="SECONDS", help="refresh every SECONDS")
    top.set_defaults(handler=_top)

    crds = commands.add_parser("crds", help="write the CRDs generated from the API models")
    crds.add_argument("--output", default="crds", help="directory to write to (default: crds)")
    crds.set_defaults(handler=_crds)
    _add_installed_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
