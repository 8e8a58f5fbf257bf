"""The `civicpulse` command: one sub-command per developer task.

To add a sub-command, write `_add_<name>(subparsers)` that registers its parser with
`set_defaults(handler=...)`, and list it in `SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import date, timedelta
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
    up.add_argument(
        "--secure",
        action="store_true",
        help="Kafka with a SASL_SSL listener, SCRAM users and ACLs per service, and "
        "PostgreSQL with TLS; prints each service's settings (docs/production.md)",
    )
    up.add_argument(
        "--brokers",
        type=int,
        default=None,
        help="Kafka nodes in one KRaft cluster (default 1; 3 gives replication factor 3 "
        "and min.insync.replicas=2; a run directory keeps its first number)",
    )
    up.set_defaults(handler=_infra_up)

    down = actions.add_parser("down", help="stop both and delete their data")
    down.add_argument("--run-dir", type=Path, default=None, help=run_dir_help)
    down.add_argument("--keep-data", action="store_true", help="keep topics and databases")
    down.set_defaults(handler=_infra_down)

    status = actions.add_parser("status", help="show each component (exit 3 unless all run)")
    status.add_argument("--run-dir", type=Path, default=None, help=run_dir_help)
    status.set_defaults(handler=_infra_status)


def _infra_up(args: argparse.Namespace) -> int:
    if args.secure:
        from civicpulse import secure_infra

        secure = secure_infra.secure_up(args.run_dir or infra.default_run_dir())
        for line in secure_infra.settings_lines(secure):
            print(line)
        return 0
    stack = infra.infra_up(args.run_dir, brokers=args.brokers)
    env = stack.env()
    for key in ("CIVICPULSE_KAFKA_BOOTSTRAP", "CIVICPULSE_DATABASE_URL"):
        print(f"export {key}={env[key]}")
    return 0


def _infra_down(args: argparse.Namespace) -> int:
    from civicpulse import secure_infra

    secure_infra.secure_down(args.run_dir or infra.default_run_dir())
    infra.infra_down(args.run_dir, keep_data=args.keep_data)
    return 0


def _infra_status(args: argparse.Namespace) -> int:
    components = infra.infra_status(args.run_dir)
    for component in components:
        state = "running" if component.running else "stopped"
        address = component.address or "-"
        pid = f" (pid {component.pid})" if component.pid else ""
        print(f"{component.name:<9} {state:<8} {address}{pid}")
    from civicpulse import secure_infra

    secure = secure_infra.load((args.run_dir or infra.default_run_dir()).resolve())
    if secure is not None:  # only after `infra up --secure`
        state = "running" if secure_infra.alive(secure.pid) else "stopped"
        print(f"{'secure':<9} {state:<8} {secure.bootstrap} SASL_SSL (pid {secure.pid})")
    return 0 if all(c.running for c in components) else 3


def _add_schemas(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "schemas",
        help="export the events' JSON Schemas and the AsyncAPI document to shared/schemas/",
        description="Writes shared/schemas/ from the pydantic event models; with --check, "
        "only reports files that differ from the code (exit 1).",
    )
    parser.add_argument("--check", action="store_true", help="compare only; write nothing")
    parser.set_defaults(handler=_schemas)


def _schemas(args: argparse.Namespace) -> int:
    from civicpulse import schemas  # imports the services' models: only when asked

    if args.check:
        stale = schemas.stale_files()
        for name in stale:
            print(f"out of date: shared/schemas/{name}", file=sys.stderr)
        if stale:
            print("run `civicpulse schemas` and commit the result", file=sys.stderr)
        return 1 if stale else 0
    written = schemas.write_files()
    print(f"wrote {len(written)} files to {schemas.SCHEMA_DIR}")
    return 0


def _add_dev(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run the whole system locally with simulated traffic (Ctrl-C stops it)",
        description="Starts Kafka and PostgreSQL, every service, and the council simulator "
        "(the last fortnight of an ordinary district council); prints where everything is. "
        "Ctrl-C stops it all, keeping the data for next time.",
    )
    parser.add_argument(
        "--rate", type=float, default=50.0, help="simulated records per second (default 50)"
    )
    parser.add_argument("--run-dir", type=Path, default=None, help="infrastructure run directory")
    parser.set_defaults(handler=_dev)


def _dev(args: argparse.Namespace) -> int:
    from civicpulse.dev import run_dev

    if args.rate <= 0:
        print("error: --rate must be above 0", file=sys.stderr)
        return 2
    return run_dev(rate=args.rate, run_dir=args.run_dir)


def _add_simulate(subparsers: Subparsers) -> None:
    from civicpulse.simulation.plan import SCENARIOS

    scenarios = "; ".join(f"{name}: {sc.description}" for name, sc in SCENARIOS.items())
    parser = subparsers.add_parser(
        "simulate",
        help="send a district council's realistic customer-service traffic",
        description="Simulates DAYS days of a council's contacts, complaints and mystery "
        "shops ending today, and sends them through intake's raw topic (and its HTTP API "
        "with --intake-url) and the complaints actions topic. Reads "
        f"CIVICPULSE_KAFKA_BOOTSTRAP. Scenarios: {scenarios}.",
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="normal")
    parser.add_argument("--days", type=int, default=30, help="simulated days (default 30)")
    parser.add_argument(
        "--start", type=date.fromisoformat, default=None, help="first day (default: DAYS ago)"
    )
    parser.add_argument(
        "--households", type=int, default=50_000, help="size of the council (default 50000)"
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="records per second; 0 sends as fast as taken"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--intake-url", default=None, help="send a share over HTTP to this intake")
    parser.add_argument("--api-key", default=None, help="intake API key for --intake-url")
    parser.add_argument(
        "--http-share", type=float, default=0.2, help="share of contacts sent over HTTP"
    )
    parser.add_argument(
        "--feedback-url", default=None, help="feedback service: residents get routes and answer"
    )
    parser.add_argument("--feedback-api-key", default=None, help="the CRM's key for --feedback-url")
    parser.add_argument(
        "--answer-seconds",
        type=float,
        default=60.0,
        help="how long residents keep answering after the last record (default 60)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would be sent")
    parser.set_defaults(handler=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    import asyncio
    from collections import Counter

    from civicpulse.simulation.plan import SCENARIOS, CouncilSimulation
    from civicpulse.simulation.residents import FeedbackTarget
    from civicpulse.simulation.run import run_simulation
    from civicpulse.simulation.send import Target
    from shared.settings import ServiceSettings

    if args.days < 1 or args.households < 100 or args.rate < 0:
        print("error: --days >= 1, --households >= 100 and --rate >= 0 please", file=sys.stderr)
        return 2
    start = args.start or date.today() - timedelta(days=args.days - 1)
    simulation = CouncilSimulation(
        SCENARIOS[args.scenario],
        start,
        args.days,
        households=args.households,
        http_share=args.http_share,
        seed=args.seed,
    )
    plan = simulation.plan()
    kinds = Counter(item.body.get("record_type") or item.body["action"] for item in plan)
    print(f"simulate: {args.scenario}, {args.days} days from {start}: {len(plan)} records")
    print("  " + ", ".join(f"{count} {kind}" for kind, count in kinds.most_common()))
    if args.dry_run:
        return 0
    target = Target(ServiceSettings().kafka, args.intake_url, args.api_key)
    feedback = (
        FeedbackTarget(args.feedback_url, args.feedback_api_key or "")
        if args.feedback_url
        else None
    )
    report = asyncio.run(
        run_simulation(
            plan,
            target,
            rate=args.rate or None,
            feedback=feedback,
            seed=args.seed,
            answer_seconds=args.answer_seconds,
        )
    )
    print(f"simulate: {report.describe()}")
    return 1 if report.http_refused else 0


def _add_import(subparsers: Subparsers) -> None:
    from civicpulse.importer import arguments

    parser = subparsers.add_parser(
        "import",
        help="import a CSV or Excel export (calls, CRM cases, contact routes) by mapping",
        description=arguments.DESCRIPTION,
        epilog=arguments.MAPPING_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    arguments.add_arguments(parser)
    parser.set_defaults(handler=_import)


def _import(args: argparse.Namespace) -> int:
    from civicpulse.importer.command import run

    return run(args)


def _add_parked(subparsers: Subparsers) -> None:
    from civicpulse import parked

    parser = subparsers.add_parser(
        "parked",
        help="list or retry timers and outbox rows parked after failing every attempt",
        description=parked.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parked.add_arguments(parser)
    parser.set_defaults(handler=parked.run)


def _add_erase(subparsers: Subparsers) -> None:
    from civicpulse import erase

    parser = subparsers.add_parser(
        "erase",
        help="erase a customer in every service and print one erasure receipt",
        description=erase.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    erase.add_arguments(parser)
    parser.set_defaults(handler=erase.run)


# Each entry registers one top-level sub-command.
SUBCOMMANDS: list[Callable[[Subparsers], None]] = [
    _add_infra,
    _add_dev,
    _add_simulate,
    _add_import,
    _add_schemas,
    _add_parked,
    _add_erase,
]


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
