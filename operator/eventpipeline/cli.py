"""Command line: `eventpipeline dev …`, `eventpipeline crds`, `run` (the controller) and `listen` (the listener)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from eventpipeline import __version__, crdgen
from eventpipeline.devenv import stack
from eventpipeline.devenv.runtime import ComponentError, Layout, Reporter


def _dev_up(args: argparse.Namespace) -> int:
    info = stack.up(Layout.from_environment(), Reporter(), only=args.only)
    print('stack is up; load its settings with:  eval "$(eventpipeline dev env)"', file=sys.stderr)
    for line in info.export_lines():
        print(line)
    return 0


def _dev_down(_: argparse.Namespace) -> int:
    stopped = stack.down(Layout.from_environment(), Reporter())
    print(f"stopped {stopped} process(es)", file=sys.stderr)
    return 0


def _dev_status(_: argparse.Namespace) -> int:
    for line in stack.status_lines(Layout.from_environment()):
        print(line)
    return 0


def _dev_env(_: argparse.Namespace) -> int:
    info = stack.read_stack(Layout.from_environment())
    if info is None:
        print("no stack is running; start one with `eventpipeline dev up`", file=sys.stderr)
        return 1
    for line in info.export_lines():
        print(line)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from eventpipeline.devenv import demo  # noqa: PLC0415 - Kubernetes and broker clients load only here

    demo.run_demo(Layout.from_environment(), Reporter(), Path(args.examples), args.messages)
    return 0


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
    from eventpipeline.listener.planning import replica_index_from_hostname  # noqa: PLC0415

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventpipeline", description=__doc__)
    parser.add_argument("--version", action="version", version=f"eventpipeline {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="the local stack: kube-apiserver, Kafka, Pulsar, Airflow")
    dev_commands = dev.add_subparsers(dest="dev_command", required=True)
    up = dev_commands.add_parser("up", help="install (cached) and start the stack, then health-check it")
    up.add_argument("--only", action="append", choices=list(stack.COMPONENTS), help="start only these")
    up.set_defaults(handler=_dev_up)
    dev_commands.add_parser("down", help="stop what `dev up` started").set_defaults(handler=_dev_down)
    dev_commands.add_parser("status", help="components, processes, log files").set_defaults(handler=_dev_status)
    dev_commands.add_parser("env", help="print export lines for the running stack").set_defaults(handler=_dev_env)
    run = commands.add_parser("run", help="run the controller (uses $KUBECONFIG or the in-cluster account)")
    run.add_argument("--peering", help="kopf peering name; set when running several replicas")
    run.add_argument("--liveness", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--metrics-port", type=int, default=9101, help="Prometheus metrics port; 0 turns it off")
    run.add_argument("--verbose", action="store_true")
    run.set_defaults(handler=_run)

    demo = commands.add_parser("demo", help="the main job: local stack, operator, listener, example pipelines")
    demo.add_argument("--examples", default="examples", help="folder with the example manifests and DAG")
    demo.add_argument("--messages", type=int, default=5, help="messages to produce per pipeline")
    demo.set_defaults(handler=_demo)

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

    crds = commands.add_parser("crds", help="write the CRDs generated from the API models")
    crds.add_argument("--output", default="crds", help="directory to write to (default: crds)")
    crds.set_defaults(handler=_crds)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ComponentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
