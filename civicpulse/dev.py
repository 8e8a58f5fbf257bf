"""`civicpulse dev`: the whole local system in one command, with simulated traffic.

Starts Kafka and PostgreSQL (the local launcher), every service as its own
process, Alertmanager on `deploy/alertmanager/` (its receivers replaced by a
local webhook that logs what would be sent), Prometheus on `deploy/prometheus/`,
then the council simulator at a gentle rate, with simulated residents answering
some of their survey links.
Ctrl-C stops the traffic, the services (SIGTERM, so they finish what they
hold), Prometheus and the infrastructure, keeping its data for next time.
"""

import asyncio
import secrets
import sys
from datetime import date, timedelta
from pathlib import Path

from civicpulse import infra
from civicpulse.simulation.plan import SCENARIOS, CouncilSimulation
from civicpulse.simulation.residents import FeedbackTarget
from civicpulse.simulation.run import run_simulation
from civicpulse.simulation.send import Target
from civicpulse.stack import (
    Credentials,
    RunningSystem,
    start_alerting,
    start_prometheus,
    start_services,
)

SIMULATED_DAYS = 14


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def printed_addresses(system: RunningSystem) -> str:
    """What `civicpulse dev` prints: every URL in it answers 200 (with the manager token
    where it says so); tests/integration/test_dashboard_browser.py checks each one."""
    credentials = system.credentials
    metrics = system.url("metrics")
    lines = [
        "",
        "CivicPulse is running:",
        f"  Kafka bootstrap   {system.infra.kafka_bootstrap}",
        f"  PostgreSQL        {system.infra.database_url}",
        f"  dashboard         {metrics}/dashboard/sign-in  (sign in with the manager token)",
        f"  KPIs for managers {metrics}/v1/kpis?period=month  (Authorization: Bearer "
        f"{credentials.manager_token})",
        f"  committee report  {metrics}/dashboard/committee  (signed in; as JSON: "
        f"{metrics}/v1/reports/committee  with the token)",
        f"  survey form       /surveys/<token> on {system.url('feedback')}/docs  (links are on "
        "topic civicpulse.notifications)",
    ]
    if system.prometheus_url:
        lines.append(f"  Prometheus        {system.prometheus_url}")
    if system.alertmanager_url:
        lines.append(f"  Alertmanager      {system.alertmanager_url}")
    if system.webhook is not None:
        # Its URL is Alertmanager's to post to, not a page: the log is what people read.
        lines.append(f"  alert webhook     what would be sent: {system.webhook.log_path}")
    for name, process in system.services.items():
        base = process.base_url
        lines.append(
            f"  {name:<17} {base}/docs  {base}/metrics  {base}/healthz   log: {process.log_path}"
        )
    lines += [
        f"  API keys          intake (X-API-Key): {credentials.intake_key}",
        f"                    complaints (case-manager): {credentials.case_manager_key}",
        f"                    feedback (crm): {credentials.crm_key}",
        f"                    metrics ops token: {credentials.ops_token}",
        "",
        "Simulated traffic is flowing (a district council's last fortnight); Ctrl-C stops it all.",
    ]
    return "\n".join(lines)


def print_addresses(system: RunningSystem) -> None:
    print(printed_addresses(system), flush=True)


async def simulate(system: RunningSystem, rate: float) -> None:
    """The last fortnight of an ordinary council, with residents answering surveys."""
    seed = secrets.randbelow(10**6)
    start = date.today() - timedelta(days=SIMULATED_DAYS - 1)
    plan = CouncilSimulation(SCENARIOS["normal"], start, SIMULATED_DAYS, seed=seed).plan()
    credentials = system.credentials
    target = Target(system.infra.kafka_bootstrap, system.url("intake"), credentials.intake_key)
    feedback = FeedbackTarget(system.url("feedback"), credentials.crm_key)
    await run_simulation(plan, target, rate=rate, feedback=feedback, seed=seed, answer_seconds=None)


def run_dev(*, rate: float, run_dir: Path | None) -> int:
    stack = infra.infra_up(run_dir)
    system: RunningSystem | None = None
    try:
        system = start_services(stack, stack.run_dir / "logs", Credentials(), say=_say)
        try:
            start_alerting(system, stack.run_dir / "alertmanager")
        except infra.InfraError as error:
            _say(f"Alertmanager not started: {error}")
        try:
            start_prometheus(system, stack.run_dir / "prometheus")
        except infra.InfraError as error:
            _say(f"Prometheus not started: {error}")
        print_addresses(system)
        asyncio.run(simulate(system, rate))
    except KeyboardInterrupt:
        _say("\nstopping…")
    finally:
        if system is not None:
            _say("stopping the services…")
            system.stop()
        infra.infra_down(run_dir, keep_data=True)
    return 0
