"""The development commands `eventpipeline dev up|down|status|env` and `eventpipeline demo`.

They live in this development package, not in the operator, so that the operator's wheel and
image hold no local stack. The operator's command line finds them through the entry point
group `eventpipeline.commands` (see `eventpipeline.cli`) and calls `add_commands`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from eventpipeline_devenv import stack
from eventpipeline_devenv.runtime import ComponentError, Layout, Reporter

Handler = Callable[[argparse.Namespace], int]


def _reported(handler: Handler) -> Handler:
    """Turn a component's failure into one line and exit code 1 instead of a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ComponentError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1

    return run


def _dev_up(args: argparse.Namespace) -> int:
    info = stack.up(Layout.from_environment(), Reporter(), only=args.only, with_=args.with_ or ())
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


def _dev_scrape(args: argparse.Namespace) -> int:
    from eventpipeline_devenv import monitoring, prometheus  # noqa: PLC0415

    info = stack.read_stack(Layout.from_environment())
    if info is None or prometheus.TARGETS_EXPORT not in info.exports:
        print("no Prometheus runs here; start it with `eventpipeline dev up --with prometheus`", file=sys.stderr)
        return 1
    targets = Path(info.exports[prometheus.TARGETS_EXPORT])
    if args.remove:
        monitoring.withdraw(targets / f"{args.component}-{args.name}.json")
        return 0
    path = monitoring.announce(targets, args.component, args.name, args.port)
    print(f"Prometheus scrapes 127.0.0.1:{args.port} as {args.component} {args.name} ({path})", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from eventpipeline_devenv import demo  # noqa: PLC0415 - Kubernetes and broker clients load only here

    demo.run_demo(Layout.from_environment(), Reporter(), Path(args.examples), args.messages, with_=args.with_ or ())
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `dev …` and `demo` to the operator's command line."""
    dev = commands.add_parser("dev", help="the local stack: kube-apiserver, Kafka, Pulsar, Airflow")
    dev_commands = dev.add_subparsers(dest="dev_command", required=True)
    up = dev_commands.add_parser("up", help="install (cached) and start the stack, then health-check it")
    up.add_argument("--only", action="append", choices=list(stack.COMPONENTS), help="start only these")
    up.add_argument(
        "--with",
        dest="with_",
        action="append",
        choices=sorted(stack.OPTIONAL),
        help="also start an optional component (prometheus: scrapes the controller and listener, loads the alerts)",
    )
    up.set_defaults(handler=_reported(_dev_up))
    dev_commands.add_parser("down", help="stop what `dev up` started").set_defaults(handler=_reported(_dev_down))
    dev_commands.add_parser("status", help="components, processes, log files").set_defaults(
        handler=_reported(_dev_status)
    )
    dev_commands.add_parser("env", help="print export lines for the running stack").set_defaults(
        handler=_reported(_dev_env)
    )

    scrape = dev_commands.add_parser(
        "scrape", help="let the stack's Prometheus scrape a controller or listener you started (its metrics port)"
    )
    scrape.add_argument("component", choices=["controller", "listener"])
    scrape.add_argument("name", help="a name for the process (its `pod` label)")
    scrape.add_argument("port", type=int, nargs="?", default=0, help="its --metrics-port")
    scrape.add_argument("--remove", action="store_true", help="stop scraping it")
    scrape.set_defaults(handler=_reported(_dev_scrape))

    demo = commands.add_parser("demo", help="the main job: local stack, operator, listener, example pipelines")
    demo.add_argument("--examples", default="examples", help="folder with the example manifests and DAG")
    demo.add_argument("--messages", type=int, default=5, help="messages to produce per pipeline")
    demo.add_argument(
        "--with", dest="with_", action="append", choices=sorted(stack.OPTIONAL), help="as `dev up --with`"
    )
    demo.set_defaults(handler=_reported(_demo))
