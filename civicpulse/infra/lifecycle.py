"""The launcher's public verbs: up, down, status, and stopping or killing one component."""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

from civicpulse.infra.kafka import (
    kafka_healthy,
    kill_kafka,
    start_kafka,
    stop_kafka,
    wait_kafka_ready,
)
from civicpulse.infra.postgres import (
    discard_postgres,
    ensure_postgres,
    kill_postgres,
    postgres_healthy,
    postmaster_pid,
    stop_postgres,
)
from civicpulse.infra.processes import sayer
from civicpulse.infra.state import (
    ENV_FILE,
    STATE_FILE,
    ComponentStatus,
    InfraError,
    LocalInfra,
    PostgresNode,
    Say,
    load_state,
    prepare_run_dir,
    resolve_run_dir,
    run_dir_lock,
    save_state,
    write_atomic,
)


def _healthy(state: LocalInfra) -> bool:
    return all(kafka_healthy(node) for node in state.kafka_nodes) and postgres_healthy(
        state.postgres
    )


def infra_up(
    run_dir: Path | None = None, *, quiet: bool = False, brokers: int | None = None
) -> LocalInfra:
    """Start (or reuse) Kafka and PostgreSQL for `run_dir`; idempotent.

    `brokers` Kafka nodes form one KRaft cluster (default 1; a run directory
    keeps the number it was first started with).
    """
    say = sayer(quiet)
    run_dir = resolve_run_dir(run_dir)
    prepare_run_dir(run_dir)
    with run_dir_lock(run_dir):
        previous = load_state(run_dir)
        if previous is not None and brokers not in (None, len(previous.kafka_nodes)):
            raise InfraError(
                f"{run_dir} holds {len(previous.kafka_nodes)} Kafka node(s), not {brokers}; "
                "run `civicpulse infra down` on it first"
            )
        if previous is not None and _healthy(previous):
            say(f"already running in {run_dir}")
            return previous
        if brokers is not None and brokers < 1:
            raise InfraError(f"brokers must be at least 1, not {brokers}")
        infra = _bring_up(run_dir, previous, brokers or 1, say)
        save_state(infra)
        say(f"Kafka {infra.kafka.version} ready at {infra.kafka_bootstrap}")
        say(f"PostgreSQL ready at {infra.database_url}")
        return infra


def _bring_up(run_dir: Path, previous: LocalInfra | None, brokers: int, say: Say) -> LocalInfra:
    nodes, launched = start_kafka(run_dir, previous.kafka_nodes if previous else (), brokers, say)
    postgres: PostgresNode | None = None
    postgres_started = False
    try:
        # PostgreSQL starts while the JVMs boot: saves a few seconds per `up`.
        postgres, postgres_started = ensure_postgres(
            run_dir, previous.postgres if previous else None, say
        )
        wait_kafka_ready(nodes)
    except BaseException:
        # Stop what we started: a test fixture that fails here never gets to call `down`.
        stop_kafka(launched, say)
        if postgres is not None and postgres_started:
            discard_postgres(postgres, run_dir, previous.postgres if previous else None, say)
        raise
    return LocalInfra(
        run_dir=run_dir, kafka=nodes[0], postgres=postgres, kafka_peers=tuple(nodes[1:])
    )


def stop_component(name: str, run_dir: Path | None = None, *, quiet: bool = False) -> None:
    """Stop only Kafka or only PostgreSQL, keeping its data and ports.

    For fault tests: `infra_up` on the same run directory starts it again
    where it was, and leaves the other component running.
    """
    _act_on_component(name, run_dir, quiet=quiet, kill=False)


def kill_component(
    name: str, run_dir: Path | None = None, *, node_id: int | None = None, quiet: bool = False
) -> None:
    """SIGKILL Kafka (every node, or node `node_id` of a cluster) or PostgreSQL's
    postmaster, as a power cut would: nothing is flushed, recovery runs at the next
    `infra_up`, which restarts only what is down."""
    _act_on_component(name, run_dir, quiet=quiet, kill=True, node_id=node_id)


def _act_on_component(
    name: str, run_dir: Path | None, *, quiet: bool, kill: bool, node_id: int | None = None
) -> None:
    say = sayer(quiet)
    run_dir = resolve_run_dir(run_dir)
    with run_dir_lock(run_dir):
        state = load_state(run_dir)
        if state is None:
            raise InfraError(f"nothing runs in {run_dir}")
        if name == "kafka":
            nodes = [n for n in state.kafka_nodes if node_id in (None, n.node_id)]
            if not nodes:
                raise InfraError(f"no Kafka node {node_id} in {run_dir}")
            (kill_kafka if kill else stop_kafka)(nodes, say)
        elif name == "postgres":
            (kill_postgres if kill else stop_postgres)(state.postgres, say)
        else:
            raise InfraError(f"unknown component {name!r}: kafka or postgres")


def infra_down(
    run_dir: Path | None = None, keep_data: bool = False, *, quiet: bool = False
) -> None:
    """Stop Kafka and PostgreSQL and delete their data; with keep_data, stop Kafka cleanly
    (SIGTERM, SIGKILL after 30 s) and keep everything for the next `infra_up`."""
    say = sayer(quiet)
    run_dir = resolve_run_dir(run_dir)
    if not run_dir.exists():
        say(f"nothing to stop: {run_dir} does not exist")
        return
    with run_dir_lock(run_dir):
        state = load_state(run_dir)
        if state is None:
            say(f"nothing to stop: no {STATE_FILE} in {run_dir}")
            return
        # Data about to be deleted needs no clean shutdown, and a cluster's
        # controlled shutdown waits for a quorum its peers are leaving.
        (stop_kafka if keep_data else kill_kafka)(state.kafka_nodes, say)
        stop_postgres(state.postgres, say)
        (run_dir / ENV_FILE).unlink(missing_ok=True)  # its addresses are dead now
        if keep_data:
            stopped = json.dumps(_stopped(state).to_json(), indent=2) + "\n"
            write_atomic(run_dir / STATE_FILE, stopped)
            say(f"stopped; data kept in {run_dir}")
            return
        _remove_data(state)
    _remove_run_dir(run_dir)
    say(f"stopped; data in {run_dir} removed")


def _stopped(state: LocalInfra) -> LocalInfra:
    return replace(
        state,
        kafka=replace(state.kafka, pid=None),
        kafka_peers=tuple(replace(peer, pid=None) for peer in state.kafka_peers),
        postgres=replace(state.postgres, pid=None),
    )


def _remove_data(state: LocalInfra) -> None:
    for node in state.kafka_nodes:
        shutil.rmtree(node.home, ignore_errors=True)
    shutil.rmtree(state.postgres.home, ignore_errors=True)  # may live outside run_dir
    (state.run_dir / STATE_FILE).unlink(missing_ok=True)


def _remove_run_dir(run_dir: Path) -> None:
    (run_dir / ".lock").unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # keep it if someone put other files there
        run_dir.rmdir()


def infra_status(run_dir: Path | None = None) -> list[ComponentStatus]:
    """Kafka and PostgreSQL as running/stopped, with their addresses."""
    state = load_state(resolve_run_dir(run_dir))
    if state is None:
        return [
            ComponentStatus("kafka", running=False, address=None, pid=None),
            ComponentStatus("postgres", running=False, address=None, pid=None),
        ]
    kafka_up = all(kafka_healthy(node) for node in state.kafka_nodes)
    postgres_up = postgres_healthy(state.postgres)
    return [
        ComponentStatus(
            "kafka", kafka_up, state.kafka_bootstrap, state.kafka.pid if kafka_up else None
        ),
        ComponentStatus(
            "postgres",
            postgres_up,
            state.database_url,
            postmaster_pid(state.postgres) if postgres_up else None,
        ),
    ]


def running_infra(run_dir: Path | None = None) -> LocalInfra | None:
    """The stack in `run_dir` if both components are healthy, else None."""
    state = load_state(resolve_run_dir(run_dir))
    if state is None or not _healthy(state):
        return None
    return state
