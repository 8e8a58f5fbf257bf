"""Scale-out: the whole pipeline with one, then two replicas of every service, in one run.

All four services run as `python -m services.X` processes on real Kafka and
PostgreSQL (the stack named by `CIVICPULSE_KAFKA_BOOTSTRAP`/`CIVICPULSE_DATABASE_URL`,
else a throwaway one), on a scratch database of their own and with consumer groups
of their own placed at the topics' end, so every figure counted is this run's.
A second replica of a service is the same command and environment on another HTTP
port: the same consumer group (Kafka splits the six partitions of each topic
between the two), the same outbox (one relay publishes at a time, an advisory
lock) and the same timers (claimed `FOR UPDATE SKIP LOCKED`).

Three phases, each on a day of its own, with a ledger of what the bench sent per
(day, service area):

1. one replica of each service: `--records` contact records published as fast as
   the bench can, throughput = records counted in `GET /v1/kpis` per second, from
   the first publish to the moment the last was counted;
2. two replicas of each: the same;
3. rebalance under load, two replicas at a steady `--rate`: mid-load the second
   replica of every service gets SIGTERM and is started again, then SIGKILL and is
   started again; every fault's time is printed against the load's, and the groups'
   members as the bench saw them change.

After each phase the bench waits until the pipeline is quiet (every group's
committed offsets at its topics' end, the outboxes empty, no timer due), then
checks `GET /v1/kpis` per (day, service area) against the ledger: equal, or the
run fails with what was lost or counted twice. CPU seconds per process (each
replica, Kafka, PostgreSQL's backends, the bench) and the machine's busy share
are printed per phase, so a cap by two shared cores shows where the time went.

    python -m bench.replicas --records 20000 --gap 8
    python -m bench.replicas --quick
"""

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bench.pipeline import (
    LOCAL,
    NamedStack,
    customer_ref,
    give_contact_routes,
    own_groups,
    record,
)
from bench.support import (
    BenchError,
    CpuAccount,
    CpuSampler,
    Endpoints,
    admin_client,
    end_offsets,
    infrastructure,
    infrastructure_pids,
    print_summary,
    say,
    where_the_cpu_went,
)
from civicpulse import infra
from civicpulse.infra import scratch_database
from civicpulse.processes import ServiceProcess
from civicpulse.stack import SERVICES, Credentials, RunningSystem, start_services
from shared.topics import (
    CANONICAL_TOPICS,
    COMPLAINT_ACTIONS,
    COMPLAINTS,
    CONTACTS,
    CONTACTS_RAW,
    TopicSpec,
)

AREAS = ("planning", "waste", "housing", "council_tax")
CUSTOMERS = 2000  # the customers this bench gives contact routes
# What each service's consumer group reads (its app's subscriptions).
GROUP_INPUTS: dict[str, Sequence[TopicSpec]] = {
    "intake": (CONTACTS_RAW,),
    "complaints": (CONTACTS, COMPLAINT_ACTIONS),
    "feedback": (CONTACTS, COMPLAINTS),
    "metrics": CANONICAL_TOPICS,
}
IDLE_GIVE_UP_S = 90.0  # no progress in counting for this long: the phase failed
TARGET_RATIO = 1.5
HEALTHY_WITHIN_S = 300.0  # a start on a machine busy with other work can take a minute
SESSION_TIMEOUT_S = 10.0  # aiokafka's default session_timeout_ms: a killed member's lease


@dataclass
class Ledger:
    """What the bench sent, per (day, service area): the truth counts are checked against."""

    sent: Counter[tuple[date, str]] = field(default_factory=Counter)

    def total(self, day: date) -> int:
        return sum(n for (d, _), n in self.sent.items() if d == day)


@dataclass(frozen=True, slots=True)
class Fault:
    action: str  # "SIGTERM", "SIGKILL", "start"
    began_s: float  # since the phase's first publish
    ended_s: float
    exit_codes: tuple[int | None, ...] = ()


@dataclass
class Phase:
    name: str
    replicas: int
    day: date
    sent: int = 0
    first_publish_s: float = 0.0  # perf_counter
    last_publish_s: float = 0.0
    all_counted_s: float | None = None
    counted: int = 0  # the day's total once the pipeline was quiet
    cells_wrong: dict[str, int] = field(default_factory=dict)  # area → counted - sent
    cpu: CpuAccount | None = None
    not_quiet: str | None = None  # what still waited when the KPIs were checked
    faults: list[Fault] = field(default_factory=list)
    members: dict[str, list[tuple[float, int]]] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        end = self.all_counted_s if self.all_counted_s is not None else float("nan")
        return end - self.first_publish_s

    @property
    def throughput(self) -> float:
        return self.sent / self.seconds if self.all_counted_s is not None else 0.0

    @property
    def exact(self) -> bool:
        return self.counted == self.sent and not self.cells_wrong


class Replicas:
    """Every service's processes: replica 1 from `start_services`, replica 2 beside it."""

    def __init__(self, system: RunningSystem, log_dir: Path) -> None:
        self.system = system
        self.log_dir = log_dir
        self.processes: dict[str, list[ServiceProcess]] = {
            name: [process] for name, process in system.services.items()
        }

    def second(self, name: str) -> ServiceProcess:
        return self.processes[name][1]

    def start_second_replicas(self) -> None:
        if all(len(processes) > 1 for processes in self.processes.values()):
            for name, processes in self.processes.items():  # started before: again
                say(f"starting the second {name} again…")
                processes[1].start()
            for processes in self.processes.values():
                processes[1].wait_healthy(HEALTHY_WITHIN_S)
            return
        taken = [p.port for ps in self.processes.values() for p in ps]
        for spec in SERVICES:
            first = self.processes[spec.name][0]
            port = infra.pick_free_port(None, avoid=taken)
            taken.append(port)
            env = {**first.env, "CIVICPULSE_HTTP_PORT": str(port)}
            process = ServiceProcess(spec.module, env, self.log_dir / f"{spec.name}-2.log")
            say(f"starting a second {spec.name} on port {port}…")
            process.start()
            self.processes[spec.name].append(process)
        for name, processes in self.processes.items():
            processes[1].wait_healthy(HEALTHY_WITHIN_S)
            say(f"  {name} #2 healthy")

    def stop_second_replicas(self) -> None:
        say("stopping the second replicas (SIGTERM)…")
        for processes in self.processes.values():
            processes[1].stop()

    def stop(self) -> None:
        for processes in self.processes.values():
            for process in processes[1:]:
                process.stop()
        self.system.stop()


# -- load -----------------------------------------------------------------------------


async def publish(
    bootstrap: str,
    phase: Phase,
    ledger: Ledger,
    *,
    records: int | None,
    rate: float | None,
    occurred: datetime,
    started_event: asyncio.Event | None = None,
    until: asyncio.Event | None = None,
    resolved_share: float = 0.1,
) -> None:
    """Records on the phase's day at `rate` per second (None: as fast as possible), until
    `records` are sent or, with `records` None, until `until` is set.
    """
    run = uuid.uuid4().hex[:8]
    rng = random.Random(run)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    pending: list[asyncio.Future[Any]] = []
    try:
        phase.first_publish_s = started = time.perf_counter()
        if started_event is not None:
            started_event.set()
        limit = records if records is not None else sys.maxsize
        while phase.sent < limit and not (until is not None and until.is_set()):
            due = limit
            if rate is not None:
                due = min(limit, int((time.perf_counter() - started) * rate) + 1)
            while phase.sent < due:
                area = AREAS[phase.sent % len(AREAS)]
                value = record(
                    run,
                    phase.sent,
                    occurred,
                    customer_ref(rng.randrange(CUSTOMERS)),
                    rng,
                    service_area=area,
                    resolved_share=resolved_share,
                )
                key = f"{run}-{phase.sent}".encode()
                pending.append(await producer.send(CONTACTS_RAW.name, value, key=key))
                ledger.sent[(phase.day, area)] += 1
                phase.sent += 1
            if rate is not None:
                await asyncio.sleep(0.01)
        await asyncio.gather(*pending)
        phase.last_publish_s = time.perf_counter()
    finally:
        await producer.stop()


async def counted(client: httpx.AsyncClient, day: date, area: str | None = None) -> int:
    params: dict[str, str] = {"from": day.isoformat(), "to": day.isoformat()}
    params["kpi"] = "contacts_received"
    if area is not None:
        params["service_area"] = area
    response = await client.get("/v1/kpis", params=params)
    response.raise_for_status()
    return int(response.json()["kpis"][0]["value"] or 0)


async def watch_counting(
    client: httpx.AsyncClient, phase: Phase, publishing: "asyncio.Task[None]"
) -> None:
    """Poll the day's count until everything sent is counted (or counting stalls)."""
    last, last_change = -1, time.perf_counter()
    while True:
        now_counted = await counted(client, phase.day)
        now = time.perf_counter()
        if now_counted != last:
            last, last_change = now_counted, now
        if publishing.done() and now_counted >= phase.sent:
            phase.all_counted_s = now
            return
        if now - last_change > IDLE_GIVE_UP_S:
            say(f"  counting stalled at {now_counted}/{phase.sent}")
            return
        await asyncio.sleep(0.2)


# -- the pipeline's state -------------------------------------------------------------


def _members_by_group(responses: Sequence[Any]) -> dict[str, tuple[str, int]]:
    """(state, members) per group from aiokafka's raw DescribeGroups responses."""
    found: dict[str, tuple[str, int]] = {}
    for response in responses:
        for group in response.groups:
            # (error_code, group_id, state, protocol_type, protocol, members, ...)
            found[group[1]] = (group[2], len(group[5]))
    return found


async def describe_groups(
    admin: AIOKafkaAdminClient, groups: Sequence[str]
) -> dict[str, tuple[str, int]]:
    """One group per request: aiokafka 0.14 fails to decode Kafka 4's answer for several."""
    found: dict[str, tuple[str, int]] = {}
    for group in groups:
        found |= _members_by_group(await admin.describe_consumer_groups([group]))
    return found


async def group_members(bootstrap: str, groups: Sequence[str]) -> dict[str, tuple[str, int]]:
    async with admin_client(bootstrap) as admin:
        return await describe_groups(admin, groups)


async def wait_for_members(
    bootstrap: str, groups: dict[str, str], members: int, within_s: float = 90.0
) -> None:
    """Until every service's group is Stable with `members` members."""
    deadline = time.monotonic() + within_s
    seen: dict[str, tuple[str, int]] = {}
    while time.monotonic() < deadline:
        seen = await group_members(bootstrap, list(groups.values()))
        if all(seen.get(g) == ("Stable", members) for g in groups.values()):
            return
        await asyncio.sleep(0.5)
    raise BenchError(f"groups not Stable with {members} members in {within_s:.0f} s: {seen}")


async def watch_members(
    bootstrap: str, groups: dict[str, str], phase: Phase, stopping: asyncio.Event
) -> None:
    """Record each group's member count whenever it changes, against the phase's clock."""
    async with admin_client(bootstrap) as admin:
        while not stopping.is_set():
            seen = await describe_groups(admin, list(groups.values()))
            now = time.perf_counter() - phase.first_publish_s
            for service, group in groups.items():
                count = seen.get(group, ("", 0))[1]
                history = phase.members.setdefault(service, [])
                if not history or history[-1][1] != count:
                    history.append((round(now, 1), count))
            await asyncio.sleep(0.5)


async def wait_until_quiet(
    bootstrap: str, database_url: str, groups: dict[str, str], within_s: float = 300.0
) -> str | None:
    """Every group's committed offsets at its topics' end, no outbox row, no timer due;
    else, after `within_s`, what was still waiting.

    Read twice in a row, so that work in flight between the checks is not missed.
    """
    deadline = time.monotonic() + within_s
    quiet_in_a_row = 0
    behind: dict[str, int] = {}
    backlog: dict[str, int] = {}
    connection = await asyncpg.connect(database_url)
    try:
        async with admin_client(bootstrap) as admin:
            topics = sorted({t.name for inputs in GROUP_INPUTS.values() for t in inputs})
            while time.monotonic() < deadline:
                ends = await end_offsets(bootstrap, topics)
                for service, group in groups.items():
                    committed = await admin.list_consumer_group_offsets(group)
                    inputs = {t.name for t in GROUP_INPUTS[service]}
                    behind[service] = sum(
                        end - (committed[tp].offset if tp in committed else 0)
                        for tp, end in ends.items()
                        if tp.topic in inputs
                    )
                rows = await connection.fetch(
                    "SELECT 'outbox ' || service AS what, count(*) AS n FROM outbox"
                    " WHERE parked_at IS NULL AND service = ANY($1::text[]) GROUP BY service"
                    " UNION ALL SELECT 'timers due ' || service, count(*) FROM timers"
                    " WHERE fired_at IS NULL AND cancelled_at IS NULL AND parked_at IS NULL"
                    " AND due_at <= now() AND service = ANY($1::text[]) GROUP BY service",
                    list(groups),
                )
                backlog = {row["what"]: row["n"] for row in rows}
                quiet = not any(behind.values()) and not any(backlog.values())
                quiet_in_a_row = quiet_in_a_row + 1 if quiet else 0
                if quiet_in_a_row >= 2:
                    return None
                await asyncio.sleep(0.5)
    finally:
        await connection.close()
    return f"not quiet within {within_s:.0f} s: records behind per group {behind}, rows {backlog}"


async def settle(run: "Run", phase: Phase) -> None:
    """Wait for the whole pipeline to be quiet; if it will not be, at least for intake and
    metrics, whose work is the count checked (feedback's backlog does not change it)."""
    phase.not_quiet = await wait_until_quiet(run.bootstrap, run.database_url, run.groups)
    if phase.not_quiet is None:
        return
    say(f"  {phase.not_quiet}")
    counting = {name: run.groups[name] for name in ("intake", "metrics")}
    if await wait_until_quiet(run.bootstrap, run.database_url, counting) is not None:
        raise BenchError(f"intake and metrics did not catch up: {phase.not_quiet}")


async def check_against_ledger(client: httpx.AsyncClient, phase: Phase, ledger: Ledger) -> None:
    phase.counted = await counted(client, phase.day)
    for area in AREAS:
        difference = await counted(client, phase.day, area) - ledger.sent[(phase.day, area)]
        if difference:
            phase.cells_wrong[area] = difference


# -- phases ---------------------------------------------------------------------------


@dataclass
class Run:
    replicas: Replicas
    groups: dict[str, str]  # service → its consumer group
    database_url: str
    ledger: Ledger
    sampler: CpuSampler
    resolved_share: float  # of the records resolved at first contact, which feedback surveys

    @property
    def bootstrap(self) -> str:
        return self.replicas.system.infra.kafka_bootstrap

    def client(self) -> httpx.AsyncClient:
        system = self.replicas.system
        headers = {"Authorization": f"Bearer {system.credentials.manager_token}"}
        return httpx.AsyncClient(base_url=system.url("metrics"), headers=headers, timeout=30)


def occurred_on(days_ago: int) -> tuple[datetime, date]:
    """An instant `days_ago` days back (recent, so feedback surveys) and its local day."""
    instant = datetime.now(UTC) - timedelta(days=days_ago, minutes=5)
    return instant, instant.astimezone(LOCAL).date()


async def throughput_phase(
    run: Run, name: str, replicas: int, days_ago: int, records: int
) -> Phase:
    occurred, day = occurred_on(days_ago)
    phase = Phase(name, replicas, day)
    await wait_for_members(run.bootstrap, run.groups, replicas)
    say(f"phase {name}: {records} records as fast as the bench sends, {replicas} replica(s)…")
    async with run.client() as client:
        run.sampler.start()
        publishing = asyncio.create_task(
            publish(
                run.bootstrap,
                phase,
                run.ledger,
                records=records,
                rate=None,
                occurred=occurred,
                resolved_share=run.resolved_share,
            )
        )
        await watch_counting(client, phase, publishing)
        await publishing
        phase.cpu = run.sampler.stop()
        await settle(run, phase)
        await check_against_ledger(client, phase, run.ledger)
    say(
        f"  counted {phase.counted}/{phase.sent} in {phase.seconds:.1f} s:"
        f" {phase.throughput:.0f}/s{'' if phase.exact else ', NOT EXACT'}"
    )
    return phase


def _fault(action: str, processes: Sequence[ServiceProcess]) -> tuple[int | None, ...]:
    """Apply one fault to every process at once (threads: each stop or start blocks)."""

    def one(process: ServiceProcess) -> int | None:
        if action == "SIGTERM":
            code = process.terminate()
            # uvicorn re-raises the signal once shut down: -15 is a graceful exit too.
            graceful = "Application shutdown complete" in process.log_tail(30)
            return code if graceful else None
        if action == "SIGKILL":
            process.kill()
            return -9
        process.start()
        process.wait_healthy(HEALTHY_WITHIN_S)
        return None

    async def all_at_once() -> tuple[int | None, ...]:
        return tuple(await asyncio.gather(*(asyncio.to_thread(one, p) for p in processes)))

    return asyncio.run(all_at_once())


async def inject_faults(
    phase: Phase, processes: Sequence[ServiceProcess], gap_s: float, session_timeout_s: float
) -> None:
    """SIGTERM, start, SIGKILL, start the processes, each `gap_s` after the last was done.

    After the SIGKILL the wait is at least the consumer session timeout, so the
    groups drop the dead members (and rebalance) while the load still runs.
    """
    steps = [
        ("SIGTERM", gap_s),
        ("start", gap_s),
        ("SIGKILL", gap_s),
        ("start", max(gap_s, session_timeout_s + 2)),
    ]
    wait = gap_s  # the warm-up before the first fault
    for action, next_wait in steps:
        await asyncio.sleep(wait)
        began = time.perf_counter() - phase.first_publish_s
        say(f"  +{began:.1f} s: {action} the second replica of every service")
        codes = await asyncio.to_thread(_fault, action, processes)
        ended = time.perf_counter() - phase.first_publish_s
        phase.faults.append(Fault(action, round(began, 2), round(ended, 2), codes))
        wait = next_wait
    await asyncio.sleep(gap_s)  # load on the restored group before it ends


async def rebalance_phase(run: Run, days_ago: int, rate: float, gap_s: float) -> Phase:
    occurred, day = occurred_on(days_ago)
    phase = Phase("rebalance", 2, day)
    await wait_for_members(run.bootstrap, run.groups, 2)
    say(f"phase rebalance: {rate:.0f} records/s until the faults are over…")
    second_replicas = [run.replicas.second(spec.name) for spec in SERVICES]
    stopping = asyncio.Event()
    load_over = asyncio.Event()
    async with run.client() as client:
        run.sampler.start()
        first_send = asyncio.Event()  # faults are timed from the first send
        publishing = asyncio.create_task(
            publish(
                run.bootstrap,
                phase,
                run.ledger,
                records=None,
                rate=rate,
                occurred=occurred,
                started_event=first_send,
                until=load_over,
                resolved_share=run.resolved_share,
            )
        )
        await first_send.wait()
        members = asyncio.create_task(watch_members(run.bootstrap, run.groups, phase, stopping))
        await inject_faults(phase, second_replicas, gap_s, SESSION_TIMEOUT_S)
        load_over.set()
        await watch_counting(client, phase, publishing)
        await publishing
        phase.cpu = run.sampler.stop()
        await settle(run, phase)
        stopping.set()
        await members
        await check_against_ledger(client, phase, run.ledger)
    load_seconds = phase.last_publish_s - phase.first_publish_s
    say(
        f"  counted {phase.counted}/{phase.sent}, load from +0.0 to +{load_seconds:.1f} s"
        f"{'' if phase.exact else ', NOT EXACT'}"
    )
    return phase


# -- report ---------------------------------------------------------------------------


def median_throughput(phases: Sequence[Phase], replicas: int) -> float:
    rates = [p.throughput for p in phases if p.replicas == replicas and p.name != "rebalance"]
    return statistics.median(rates) if rates else 0.0


def two_over_one(phases: Sequence[Phase]) -> float | None:
    one = median_throughput(phases, 1)
    return median_throughput(phases, 2) / one if one else None


def report(phases: Sequence[Phase]) -> str:
    lines = ["phase       replicas    sent  counted  lost  twice  seconds  counted/s  exact"]
    for p in phases:
        lost = max(0, p.sent - p.counted)
        twice = max(0, p.counted - p.sent)
        lines.append(
            f"{p.name:<10}  {p.replicas:>8}  {p.sent:>6}  {p.counted:>7}  {lost:>4}  {twice:>5}"
            f"  {p.seconds:>7.1f}  {p.throughput:>9.0f}  {'yes' if p.exact else 'NO'}"
        )
        for area, difference in p.cells_wrong.items():
            lines.append(f"  {area}: counted {difference:+d} against the ledger")
        if p.not_quiet:
            lines.append(f"  {p.not_quiet}")
    ratio = two_over_one(phases)
    if ratio is not None:
        lines.append(
            f"median counted/s: one replica {median_throughput(phases, 1):.0f},"
            f" two {median_throughput(phases, 2):.0f}; two / one: {ratio:.2f}"
            f" (target >= {TARGET_RATIO})"
        )
    lines.append("")
    lines += where_the_cpu_went([(p.name, p.cpu, p.sent) for p in phases])
    lines += [busiest(p) for p in phases if p.cpu]
    for p in phases:
        if p.faults:
            lines.append("")
            load_end = p.last_publish_s - p.first_publish_s
            lines.append(f"{p.name}: load published from +0.0 s to +{load_end:.1f} s")
            for f in p.faults:
                overlaps = "during the load" if f.began_s < load_end else "AFTER the load"
                codes = ""
                if f.action == "SIGTERM":
                    graceful = sum(code is not None for code in f.exit_codes)
                    codes = f" ({graceful}/{len(f.exit_codes)} shut down gracefully)"
                lines.append(
                    f"  {f.action:<7} +{f.began_s:.1f} s → +{f.ended_s:.1f} s, {overlaps}{codes}"
                )
            for service, history in p.members.items():
                steps = " → ".join(f"{n} at +{t:.1f} s" for t, n in history)
                lines.append(f"  {service} group members: {steps}")
    return "\n".join(lines)


def busiest(phase: Phase) -> str:
    """How busy the machine was over the phase and which process used the most of it."""
    cpu = cast(CpuAccount, phase.cpu)
    services = {role: s for role, s in cpu.seconds.items() if "#" in role}
    top = max(services, key=services.__getitem__) if services else "-"
    of_a_core = services.get(top, 0.0) / cpu.wall_seconds if cpu.wall_seconds else 0.0
    return (
        f"{phase.name}: machine {cpu.share_of_machine(cpu.machine_busy_seconds):.0%} busy"
        f" ({cpu.machine_busy_seconds / max(cpu.wall_seconds, 1e-9):.2f} of {cpu.cores:.0f}"
        f" cores), this run's processes {cpu.share_of_machine(cpu.tracked_seconds):.0%},"
        f" others {cpu.share_of_machine(cpu.other_seconds):.0%};"
        f" busiest replica {top} at {of_a_core:.2f} of a core"
    )


def summary(phases: Sequence[Phase], args: argparse.Namespace) -> dict[str, Any]:
    ratio = two_over_one(phases)
    return {
        "records_per_phase": args.records,
        "rebalance_rate": args.rate,
        "phases": [
            {
                "name": p.name,
                "replicas": p.replicas,
                "sent": p.sent,
                "counted": p.counted,
                "cells_wrong": p.cells_wrong,
                "seconds": round(p.seconds, 2),
                "counted_per_second": round(p.throughput, 1),
                "exact": p.exact,
                "not_quiet": p.not_quiet,
                "cpu_seconds": {
                    k: round(v, 2) for k, v in (p.cpu.seconds if p.cpu else {}).items()
                },
                "cpu_seconds_per_1000_contacts": {
                    role: round(per_thousand, 3)
                    for role, (per_thousand, _) in (
                        p.cpu.where_it_went(p.sent).items() if p.cpu else ()
                    )
                },
                "share_of_cores": {
                    role: round(share, 3)
                    for role, (_, share) in (p.cpu.where_it_went(p.sent).items() if p.cpu else ())
                },
                "cores": round(p.cpu.cores, 2) if p.cpu else None,
                "machine_busy_seconds": round(p.cpu.machine_busy_seconds, 1) if p.cpu else None,
                "machine_capacity_seconds": round(p.cpu.machine_capacity_seconds, 1)
                if p.cpu
                else None,
                "load_average": p.cpu.load_average if p.cpu else None,
                "faults": [_fault_dict(f) for f in p.faults],
                "members": p.members,
            }
            for p in phases
        ],
        "one_replica_per_second": round(median_throughput(phases, 1), 1),
        "two_replicas_per_second": round(median_throughput(phases, 2), 1),
        "two_over_one": round(ratio, 3) if ratio is not None else None,
        "target_ratio": TARGET_RATIO,
        "exact": all(p.exact for p in phases),
    }


def _fault_dict(fault: Fault) -> dict[str, Any]:
    return {
        "action": fault.action,
        "began_s": fault.began_s,
        "ended_s": fault.ended_s,
        "exit_codes": list(fault.exit_codes),
    }


def track_cpu(sampler: CpuSampler, replicas: Replicas, endpoints: Endpoints) -> None:
    def replica(name: str, index: int) -> Callable[[], list[tuple[int, bool]]]:
        def pids() -> list[tuple[int, bool]]:
            processes = replicas.processes[name]
            pid = processes[index].pid if index < len(processes) else None
            return [(pid, False)] if pid is not None else []

        return pids

    for spec in SERVICES:
        for index in range(2):
            sampler.track(f"{spec.name}#{index + 1}", replica(spec.name, index))
    for role, pids in infrastructure_pids(endpoints).items():
        sampler.track(role, pids)
    bench = os.getpid()
    sampler.track("bench", lambda: [(bench, False)])


async def run_phases(endpoints: Endpoints, args: argparse.Namespace) -> list[Phase]:
    """The three phases on a scratch database of their own (dropped at the end)."""
    phases: list[Phase] = []
    database = f"bench_replicas_{uuid.uuid4().hex[:8]}"
    async with scratch_database(endpoints.database_url, database) as database_url:
        stack = NamedStack(
            endpoints.kafka_bootstrap, database_url, tuple(endpoints.kafka_bootstrap.split(","))
        )
        env = await own_groups(endpoints.kafka_bootstrap)
        groups = {name: next(iter(values.values())) for name, values in env.items()}
        log_dir = Path(tempfile.mkdtemp(prefix="cp-replicas-"))
        say(f"service logs in {log_dir}")
        system = await asyncio.to_thread(
            start_services,
            cast(infra.LocalInfra, stack),
            log_dir,
            Credentials(),
            say=say,
            extra_env=env,
            preferred_ports=False,
        )
        replicas = Replicas(system, log_dir)
        try:
            await give_contact_routes(system, "", range(CUSTOMERS))
            sampler = CpuSampler()
            track_cpu(sampler, replicas, endpoints)
            run = Run(replicas, groups, database_url, Ledger(), sampler, args.surveyed)
            days_ago = 1
            for index in range(args.runs):
                if index:
                    await asyncio.to_thread(replicas.stop_second_replicas)
                phases.append(
                    await throughput_phase(run, f"one-{index + 1}", 1, days_ago, args.records)
                )
                await asyncio.to_thread(replicas.start_second_replicas)
                phases.append(
                    await throughput_phase(run, f"two-{index + 1}", 2, days_ago + 1, args.records)
                )
                days_ago += 2
            if args.rate is None:
                args.rate = max(50.0, round(median_throughput(phases, 1) / 2))
            phases.append(await rebalance_phase(run, days_ago, args.rate, args.gap))
        finally:
            await asyncio.to_thread(replicas.stop)
    return phases


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replicas", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--records", type=int, default=20_000, help="records per throughput phase (20,000)"
    )
    parser.add_argument(
        "--surveyed",
        type=float,
        default=0.1,
        help="share of records resolved at first contact, each a survey decision for feedback"
        " (0.1; bench.pipeline uses 0.7)",
    )
    parser.add_argument(
        "--runs", type=int, default=2, help="one/two pairs, alternated against drift (2)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="records/s during the rebalance (default: half the one-replica throughput)",
    )
    parser.add_argument(
        "--gap",
        type=float,
        default=8.0,
        help="seconds of load before each fault of the rebalance, and after the last (8)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="one pair of 5,000 records per phase, 5 s gaps"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.gap, args.runs = 5_000, 5.0, 1
    with infrastructure() as endpoints:
        phases = asyncio.run(run_phases(endpoints, args))
    print(report(phases))
    print_summary("replicas", summary(phases, args))
    return 0 if all(p.exact for p in phases) else 1


if __name__ == "__main__":
    sys.exit(main())
