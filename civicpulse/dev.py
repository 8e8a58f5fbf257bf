"""`civicpulse dev`: the whole local system in one command, with simulated traffic.

Starts Kafka and PostgreSQL (the local launcher), every service as its own
process, then the council simulator at a gentle rate. Ctrl-C stops the traffic and
the services (SIGTERM, so they finish what they hold) and then the
infrastructure, keeping its data for the next start.
"""

import asyncio
import json
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from civicpulse import infra
from civicpulse.processes import ServiceProcess
from civicpulse.simulation.plan import SCENARIOS, CouncilSimulation
from civicpulse.simulation.send import Target, send_plan
from shared.api_keys import hash_api_key


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    module: str
    port: int


SERVICES = (ServiceSpec("intake", "services.intake", 8001),)
SIMULATOR_SOURCE = "simulator"
SIMULATED_DAYS = 14


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start_services(stack: infra.LocalInfra, log_dir: Path, api_key: str) -> list[ServiceProcess]:
    log_dir.mkdir(parents=True, exist_ok=True)
    base_env = {
        "CIVICPULSE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "CIVICPULSE_DATABASE_URL": stack.database_url,
        "CIVICPULSE_INTAKE_API_KEYS": json.dumps({SIMULATOR_SOURCE: hash_api_key(api_key)}),
    }
    started: list[ServiceProcess] = []
    for spec in SERVICES:
        port = infra.pick_free_port(spec.port)
        process = ServiceProcess(
            spec.module,
            {**base_env, "CIVICPULSE_HTTP_PORT": str(port)},
            log_dir / f"{spec.name}.log",
        )
        _say(f"starting {spec.name} on port {port}…")
        process.start()
        started.append(process)
        process.wait_healthy()
    return started


def print_addresses(stack: infra.LocalInfra, services: list[ServiceProcess], api_key: str) -> None:
    lines = [
        "",
        "CivicPulse is running:",
        f"  Kafka bootstrap     {stack.kafka_bootstrap}",
        f"  PostgreSQL          {stack.database_url}",
    ]
    for process in services:
        name = process.module.removeprefix("services.")
        lines += [
            f"  {name:<19} {process.base_url}/docs  (API docs)",
            f"  {'':<19} {process.base_url}/metrics  {process.base_url}/healthz",
            f"  {'':<19} log: {process.log_path}",
        ]
    lines += [
        f"  intake API key      {api_key}  (source system '{SIMULATOR_SOURCE}', header X-API-Key)",
        "",
        "Simulated traffic is flowing (a district council's last fortnight); Ctrl-C stops it all.",
    ]
    print("\n".join(lines), flush=True)


async def _simulate(
    stack: infra.LocalInfra, intake: ServiceProcess, api_key: str, rate: float
) -> None:
    """The last fortnight of an ordinary council, at a gentle rate."""
    start = date.today() - timedelta(days=SIMULATED_DAYS - 1)
    plan = CouncilSimulation(
        SCENARIOS["normal"], start, SIMULATED_DAYS, seed=secrets.randbelow(10**6)
    ).plan()
    target = Target(stack.kafka_bootstrap, intake.base_url, api_key)
    report = await send_plan(plan, target, rate=rate)
    _say(f"simulate: {report.describe()}")


def run_dev(*, rate: float, run_dir: Path | None) -> int:
    stack = infra.infra_up(run_dir)
    api_key = secrets.token_urlsafe(24)
    services: list[ServiceProcess] = []
    try:
        services = start_services(stack, stack.run_dir / "logs", api_key)
        print_addresses(stack, services, api_key)
        asyncio.run(_simulate(stack, services[0], api_key, rate))
        _say("simulated traffic all sent; the system keeps running until Ctrl-C")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _say("\nstopping…")
    finally:
        for process in reversed(services):
            _say(f"stopping {process.module}…")
            process.stop()
        infra.infra_down(run_dir, keep_data=True)
    return 0
