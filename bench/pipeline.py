"""The whole pipeline under rising load, beside the broker's own rate.

Starts a throwaway local system (Kafka, PostgreSQL and all four services as
`python -m services.X` processes), then publishes contact records to intake's
raw topic at increasing rates, each step on its own simulated day. At every
step it measures end to end: from publishing a contact to seeing it counted in
the metrics service's `GET /v1/kpis` (checkpoints every 100 records, p50 and
p99). It prints:

- per step: target and achieved rate, p50 and p99 end-to-end latency;
- the sustained rate: the highest step achieved (95 % of target) with p99
  under one second;
- each service's resident memory at the end;
- the raw broker's rate on the same machine, from Kafka's own
  `org.apache.kafka.tools.ProducerPerformance` (the jars the launcher
  fetched), and the sustained rate as a share of it.

    python -m bench.pipeline --rates 250,500,1000,2000 --seconds 20
"""

import argparse
import asyncio
import random
import re
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx

from bench.kpi_latency import Freshness, Options, percentiles, poll_kpis, publish_steadily
from civicpulse import infra
from civicpulse.stack import Credentials, RunningSystem, start_services
from shared.kafka import ensure_topics
from shared.topics import DAY_MS, TopicSpec

P99_LIMIT_SECONDS = 1.0
ACHIEVED_SHARE = 0.95
PERF_TOPIC = TopicSpec("bench.producer-perf", 6, DAY_MS, "ProducerPerformance scratch topic")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Step:
    rate: int
    achieved: float
    p50_ms: float
    p99_ms: float

    @property
    def sustained(self) -> bool:
        return (
            self.achieved >= ACHIEVED_SHARE * self.rate and self.p99_ms < P99_LIMIT_SECONDS * 1000
        )


async def measure_step(system: RunningSystem, rate: int, seconds: float, day: date) -> Step:
    options = Options(
        rate=rate, seconds=seconds, warmup=2.0, history_events=0, requests=0, json=False
    )
    freshness = Freshness()
    total = int(rate * seconds)
    headers = {"Authorization": f"Bearer {system.credentials.manager_token}"}
    async with httpx.AsyncClient(
        base_url=system.url("metrics"), headers=headers, timeout=30
    ) as client:
        poller = asyncio.create_task(
            poll_kpis(
                client,
                day,
                freshness,
                total,
                time.perf_counter() + options.warmup,
                time.perf_counter() + seconds + 60,
            )
        )
        achieved = await publish_steadily(
            system.infra.kafka_bootstrap, uuid.uuid4().hex[:8], day, options, freshness
        )
        await poller
    latency = percentiles(freshness.latencies)
    return Step(rate, achieved, latency.p50_ms, latency.p99_ms)


def broker_rate(bootstrap: str, records: int) -> float:
    """Kafka's own producer benchmark: records/s with acks=all and idempotence."""
    asyncio.run(ensure_topics(bootstrap, [PERF_TOPIC]))
    output = subprocess.run(
        [
            "java",
            "-Xmx512m",
            "-cp",
            infra.kafka_classpath(),
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            PERF_TOPIC.name,
            "--num-records",
            str(records),
            "--record-size",
            "400",
            "--throughput",
            "-1",
            "--producer-props",
            f"bootstrap.servers={bootstrap}",
            "acks=all",
            "enable.idempotence=true",
            "linger.ms=5",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    summary = [line for line in output.splitlines() if "records sent" in line][-1]
    match = re.search(r"([\d.]+) records/sec", summary)
    if match is None:
        raise RuntimeError(f"unexpected ProducerPerformance output: {summary}")
    return float(match.group(1))


def report(steps: Sequence[Step], memory: dict[str, int | None], raw_rate: float) -> str:
    lines = ["rate/s  achieved/s  p50 ms  p99 ms  sustained"]
    for step in steps:
        lines.append(
            f"{step.rate:>6}  {step.achieved:>10.0f}  {step.p50_ms:>6.0f}  {step.p99_ms:>6.0f}  "
            f"{'yes' if step.sustained else 'no'}"
        )
    sustained = max((s.rate for s in steps if s.sustained), default=0)
    lines.append(f"sustained rate with end-to-end p99 < 1 s: {sustained} contacts/s")
    for name, rss in memory.items():
        lines.append(f"memory {name:<11} {rss / 2**20 if rss else float('nan'):.0f} MiB resident")
    lines.append(f"raw broker (ProducerPerformance, 400-byte records): {raw_rate:,.0f} records/s")
    lines.append(f"sustained / raw broker: {sustained / raw_rate:.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rates", default="250,500,1000,2000", help="comma-separated steps")
    parser.add_argument("--seconds", type=float, default=20, help="publishing time per step")
    parser.add_argument(
        "--perf-records", type=int, default=300_000, help="ProducerPerformance records"
    )
    args = parser.parse_args(argv)
    rates = [int(rate) for rate in args.rates.split(",")]
    run_dir = Path(tempfile.mkdtemp(prefix="cp-pipeline-"))
    stack = infra.infra_up(run_dir / "infra")
    system: RunningSystem | None = None
    try:
        system = start_services(stack, run_dir / "logs", Credentials(), say=say)
        steps: list[Step] = []
        rng = random.Random(secrets.randbits(32))
        for index, rate in enumerate(rates):
            day = date(2001, 1, 1) + timedelta(days=index + rng.randrange(300))
            say(f"step {index + 1}/{len(rates)}: {rate} contacts/s for {args.seconds:.0f} s…")
            step = asyncio.run(measure_step(system, rate, args.seconds, day))
            latency = f"p50 {step.p50_ms:.0f} ms, p99 {step.p99_ms:.0f} ms"
            say(f"  achieved {step.achieved:.0f}/s, {latency}")
            steps.append(step)
        memory = {
            name: process.resident_memory_bytes() for name, process in system.services.items()
        }
        say("measuring the raw broker with ProducerPerformance…")
        raw_rate = broker_rate(stack.kafka_bootstrap, args.perf_records)
        print(report(steps, memory, raw_rate))
    finally:
        if system is not None:
            system.stop()
        infra.infra_down(run_dir / "infra")
    return 0


if __name__ == "__main__":
    sys.exit(main())
