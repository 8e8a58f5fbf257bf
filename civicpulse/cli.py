"""The `civicpulse` command: one sub-command per developer task.

To add a sub-command, write `_add_<name>(subparsers)` that registers its parser with
`set_defaults(handler=...)`, and list it in `SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from civicpulse import infra

if TYPE_CHECKING:
    # argparse has no public name for what add_subparsers() returns.
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

Handler = Callable[[argparse.Namespace], int]


def _add_infra(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "infra",
        help="start, stop or inspect the local Kafka broker and PostgreSQL (no Docker)",
        description=(
            "Local infrastructure: Apache Kafka from Maven Central jars and the machine's "
            "PostgreSQL, both on 127.0.0.1, kept in a run directory. Progress goes to stderr "
            'and `up` prints `export` lines on stdout, so `eval "$(civicpulse infra up)"` works.'
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="{up,down,status}")
    run_dir_help = "run directory (default: $CIVICPULSE_RUN_DIR or <repo>/.civicpulse/run)"

    up = actions.add_parser("up", help="start Kafka and PostgreSQL (idempotent)")
    up.add_argument("--run-dir", type=Path, default=None, help=run_dir_help)
    up.set_defaults(handler=_infra_up)

    down = actions.add_parser("down", help="stop both and delete their data")
    down.add_argument("--run-dir", type=Path, default=None, help=run_dir_help)
    down.add_argument("--keep-data", action="store_true", help="keep topics and databases")
    down.set_defaults(handler=_infra_down)

    status = actions.add_parser("status", help="show each component (exit 3 unless all run)")
    status.add_argument("--run-dir", type=Path, default=None, help=run_dir_help)
    status.set_defaults(handler=_infra_status)


def _infra_up(args: argparse.Namespace) -> int:
    stack = infra.infra_up(args.run_dir)
    env = stack.env()
    for key in ("CIVICPULSE_KAFKA_BOOTSTRAP", "CIVICPULSE_DATABASE_URL"):
        print(f"export {key}={env[key]}")
    return 0


def _infra_down(args: argparse.Namespace) -> int:
    infra.infra_down(args.run_dir, keep_data=args.keep_data)
    return 0


def _infra_status(args: argparse.Namespace) -> int:
    components = infra.infra_status(args.run_dir)
    for component in components:
        state = "running" if component.running else "stopped"
        address = component.address or "-"
        pid = f" (pid {component.pid})" if component.pid else ""
        print(f"{component.name:<9} {state:<8} {address}{pid}")
    return 0 if all(c.running for c in components) else 3


# Each entry registers one top-level sub-command.
SUBCOMMANDS: list[Callable[[Subparsers], None]] = [_add_infra]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(prog="civicpulse", description="CivicPulse developer tools.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `civicpulse` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except infra.InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
