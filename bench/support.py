"""What every benchmark shares: the infrastructure it runs on, Kafka positions, the JSON summary.

`infrastructure()` uses the stack named by `CIVICPULSE_KAFKA_BOOTSTRAP` and
`CIVICPULSE_DATABASE_URL` when both are set, else starts a throwaway one through
`civicpulse.infra`'s public entry points on a temporary run directory and stops it
at the end; scratch databases come from `civicpulse.infra.scratch_database`. Every
benchmark ends with `print_summary(...)`: one JSON line on stdout,
so runs can be compared by machine.
"""

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

Offsets = dict[TopicPartition, int]


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    kafka_bootstrap: str
    database_url: str


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def print_summary(benchmark: str, figures: dict[str, Any]) -> None:
    """The benchmark's one JSON summary line, last on stdout."""
    print(json.dumps({"benchmark": benchmark, **figures}, default=str), flush=True)


@dataclass(frozen=True, slots=True)
class Percentiles:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    p95_ms: float = float("nan")


def percentiles(samples: Sequence[float]) -> Percentiles:
    """p50, p95, p99 and max of durations in seconds, as milliseconds."""
    ordered = sorted(samples)
    if not ordered:
        return Percentiles(0, float("nan"), float("nan"), float("nan"))

    def rank(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000

    return Percentiles(
        len(ordered),
        statistics.median(ordered) * 1000,
        rank(0.99),
        ordered[-1] * 1000,
        p95_ms=rank(0.95),
    )


# -- infrastructure -------------------------------------------------------------------


@contextlib.contextmanager
def infrastructure() -> Iterator[Endpoints]:
    """The stack named by the environment, else a throwaway one from the local launcher."""
    bootstrap = os.environ.get("CIVICPULSE_KAFKA_BOOTSTRAP")
    database_url = os.environ.get("CIVICPULSE_DATABASE_URL")
    if bootstrap and database_url:
        say(f"using Kafka {bootstrap} and PostgreSQL from the environment")
        yield Endpoints(bootstrap, database_url)
        return
    from civicpulse.infra import infra_down, infra_up

    run_dir = Path(tempfile.mkdtemp(prefix="cp-bench-"))
    say(f"no CIVICPULSE_KAFKA_BOOTSTRAP/DATABASE_URL: starting a local stack in {run_dir}")
    try:
        infra = infra_up(run_dir)
        yield Endpoints(infra.kafka_bootstrap, infra.database_url)
    finally:
        infra_down(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


# -- Kafka helpers --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def admin_client(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="civicpulse-bench")
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def partitions_of(
    bootstrap: str, names: Sequence[str], within_s: float = 30.0
) -> list[TopicPartition]:
    """Every partition of the topics, once each has a leader (new topics need a moment)."""
    deadline = time.monotonic() + within_s
    async with admin_client(bootstrap) as admin:
        while time.monotonic() < deadline:
            described = await admin.describe_topics(list(names))
            if all(
                topic["error_code"] == 0
                and topic["partitions"]
                and all(partition["leader"] >= 0 for partition in topic["partitions"])
                for topic in described
            ):
                return [
                    TopicPartition(topic["topic"], partition["partition"])
                    for topic in described
                    for partition in topic["partitions"]
                ]
            await asyncio.sleep(0.1)
    raise BenchError(f"{', '.join(names)}: partitions without a leader after {within_s:.0f} s")


async def end_offsets(bootstrap: str, names: Sequence[str]) -> Offsets:
    """End offsets of every partition; also waits until the leaders serve requests."""
    partitions = await partitions_of(bootstrap, names)
    client = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await client.start()
    try:
        offsets: Offsets = await client.end_offsets(partitions)
    finally:
        await client.stop()
    return offsets


async def place_group(bootstrap: str, group_id: str, offsets: Offsets) -> None:
    """Commit `offsets` for a group that has never run, so it starts exactly there."""
    client = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await client.start()
    try:
        client.assign(list(offsets))
        await client.commit(offsets)
    finally:
        await client.stop()


async def groups_lag(bootstrap: str, groups: dict[str, str], placed: Offsets) -> dict[str, int]:
    """Records each consumer group has yet to commit on the topics it consumes: name -> records.

    The groups were placed (`place_group`) at `placed` on every topic; a topic the group
    consumes is one where it has committed past that on some partition since (so
    measure after the group has handled something of each of its topics).
    """
    lag: dict[str, int] = {}
    client = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await client.start()
    try:
        async with admin_client(bootstrap) as admin:
            for name, group in groups.items():
                offsets = await admin.list_consumer_group_offsets(group)
                consumed = {
                    tp.topic for tp, meta in offsets.items() if meta.offset > placed.get(tp, 0)
                }
                committed = {tp: meta for tp, meta in offsets.items() if tp.topic in consumed}
                ends = await client.end_offsets(list(committed)) if committed else {}
                lag[name] = sum(
                    max(0, ends[tp] - max(meta.offset, 0)) for tp, meta in committed.items()
                )
    finally:
        await client.stop()
    return lag


# -- where the CPU goes ---------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, *, with_reaped_children: bool = False) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None when it is gone.

    `with_reaped_children` adds the children it has waited for: PostgreSQL's
    postmaster reaps its backends, so their CPU stays counted after they exit.
    """
    fields = _stat_fields(pid)
    if fields is None:
        return None
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


def children_of(parent: int) -> list[int]:
    try:  # Linux keeps each thread's children; the main thread's are the process's
        listed = Path(f"/proc/{parent}/task/{parent}/children").read_text()
        return [int(pid) for pid in listed.split()]
    except OSError:
        pass
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == parent:  # ppid
                children.append(int(entry.name))
    return children


def listening_pid(port: int) -> int | None:
    """The process listening on a loopback TCP port (Kafka's, PostgreSQL's), via /proc."""
    from civicpulse.processes import listening_socket_inodes

    inodes = listening_socket_inodes(port)
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if str(fd.readlink()) in inodes:
                        return int(entry.name)
    return None


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, every core and process."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


# The rows `CpuAccount.where_it_went` adds after the processes', in this order.
MACHINE_ROWS = ("all tracked", "other processes", "machine busy", "machine idle")


@dataclass
class CpuAccount:
    """CPU seconds per role ("intake#1", "kafka", ...) between `start()` and `stop()`."""

    seconds: dict[str, float]
    wall_seconds: float
    machine_busy_seconds: float
    machine_capacity_seconds: float
    load_average: tuple[float, float, float]

    @property
    def cores(self) -> float:
        """The machine's cores, as its CPU time counted over the wall time shows them."""
        return self.machine_capacity_seconds / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def tracked_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def other_seconds(self) -> float:
        """What the machine was busy with besides the tracked processes (other benchmarks)."""
        return max(0.0, self.machine_busy_seconds - self.tracked_seconds)

    def share_of_machine(self, seconds: float) -> float:
        """CPU seconds as a share of every core's time over the account's wall time."""
        return seconds / self.machine_capacity_seconds if self.machine_capacity_seconds else 0.0

    def where_it_went(self, units: int) -> dict[str, tuple[float, float]]:
        """Per role, then "all tracked", "other processes", "machine busy" and "machine idle":
        (CPU seconds per 1,000 of `units` (contacts), share of the machine's cores)."""
        per_thousand = 1000 / units if units else 0.0
        idle = max(0.0, self.machine_capacity_seconds - self.machine_busy_seconds)
        machine = (self.tracked_seconds, self.other_seconds, self.machine_busy_seconds, idle)
        rows = {**self.seconds, **dict(zip(MACHINE_ROWS, machine, strict=True))}
        return {
            role: (seconds * per_thousand, self.share_of_machine(seconds))
            for role, seconds in rows.items()
        }


def where_the_cpu_went(columns: Sequence[tuple[str, "CpuAccount | None", int]]) -> list[str]:
    """A table of `where_it_went` for several accounts: one column each, named, with the
    units (contacts) it is divided by; a role missing from a column shows "-"."""
    accounts = [(name, account, units) for name, account, units in columns if account]
    if not accounts:
        return []
    cores = max(account.cores for _, account, _ in accounts)
    tables = [(name, account.where_it_went(units)) for name, account, units in accounts]
    processes = dict.fromkeys(role for _, account, _ in accounts for role in account.seconds)
    roles = [*processes, *MACHINE_ROWS]
    width = max(len(role) for role in roles)
    lines = [
        "Where the CPU went: CPU seconds per 1,000 contacts, and % of the machine's"
        f" {cores:.0f} cores over the phase (one core is {100 / max(cores, 1):.0f} %; a service"
        " replica, one Python process, uses at most about one core)",
        " " * width + "".join(f"  {name:>14}" for name, _ in tables),
    ]
    for role in roles:
        cells = ""
        for _, table in tables:
            if role in table:
                per_thousand, share = table[role]
                cells += f"  {per_thousand:>7.2f} {share:>5.0%}"
            else:
                cells += f"  {'-':>14}"
        lines.append(f"{role:<{width}}{cells}")
    loads = "".join(f"  {account.load_average[0]:>14.1f}" for _, account, _ in accounts)
    lines.append(f"{'load avg 1m':<{width}}{loads}")
    return lines


class CpuSampler:
    """Samples the CPU of named processes every `interval` seconds in a thread.

    A role's processes may change during a phase (a replica killed and started
    again): each pid's last sample counts, from zero for a pid first seen
    after the start (its CPU began at its fork). The CPU a process spends after
    its last sample (at most `interval`) is missed.
    """

    def __init__(self, interval: float = 0.5) -> None:
        import threading

        self._interval = interval
        self._roles: dict[str, Callable[[], list[tuple[int, bool]]]] = {}
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._started = 0.0
        self._machine_start = (0.0, 0.0)

    def track(self, role: str, pids: Callable[[], list[tuple[int, bool]]]) -> None:
        """`pids()` gives the role's current (pid, with_reaped_children) pairs."""
        self._roles[role] = pids

    def _sample(self, *, first: bool) -> None:
        for role, pids in self._roles.items():
            for pid, with_children in pids():
                seconds = cpu_seconds(pid, with_reaped_children=with_children)
                if seconds is None:
                    continue
                with self._lock:
                    if first:
                        self._first[(role, pid)] = seconds
                    else:
                        self._first.setdefault((role, pid), 0.0)
                    self._last[(role, pid)] = seconds

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self._sample(first=False)

    def start(self) -> None:
        import threading

        self._first.clear()
        self._last.clear()
        self._stopping.clear()
        self._started = time.monotonic()
        self._machine_start = machine_cpu()
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> CpuAccount:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(first=False)
        busy, total = machine_cpu()
        per_role: dict[str, float] = dict.fromkeys(self._roles, 0.0)
        with self._lock:
            for (role, pid), last in self._last.items():
                per_role[role] += last - self._first.get((role, pid), 0.0)
        return CpuAccount(
            seconds=per_role,
            wall_seconds=time.monotonic() - self._started,
            machine_busy_seconds=busy - self._machine_start[0],
            machine_capacity_seconds=total - self._machine_start[1],
            load_average=os.getloadavg(),
        )


def infrastructure_pids(endpoints: Endpoints) -> dict[str, Callable[[], list[tuple[int, bool]]]]:
    """CPU roles for Kafka (its listening JVM) and PostgreSQL (postmaster and backends)."""
    from urllib.parse import urlsplit

    kafka_port = int(endpoints.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])
    kafka = listening_pid(kafka_port)
    postmaster = listening_pid(urlsplit(endpoints.database_url).port or 5432)
    roles: dict[str, Callable[[], list[tuple[int, bool]]]] = {}
    if kafka is not None:
        roles["kafka"] = lambda: [(kafka, False)]
    if postmaster is not None:
        roles["postgresql"] = lambda: [
            # Not the postmaster's reaped children: a backend's CPU is already
            # sampled live, and would count twice when it exits.
            (postmaster, False),
            *((child, False) for child in children_of(postmaster)),
        ]
    return roles
