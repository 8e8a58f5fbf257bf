"""The whole system as processes: every service, and Prometheus, on local infrastructure.

Used by `civicpulse dev`, the fault tests and the pipeline benchmark, so that
all three run the services exactly as operators do: `python -m services.X`,
configured only by environment variables.
"""

import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from civicpulse import infra
from civicpulse.alerting import WebhookReceiver, start_alertmanager
from civicpulse.processes import REPO_ROOT, ServiceProcess
from shared.api_keys import hash_api_key

Say = Callable[[str], None]
PROMETHEUS_CONFIG = REPO_ROOT / "deploy" / "prometheus" / "prometheus.local.yml"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    preferred_port: int

    @property
    def module(self) -> str:
        return f"services.{self.name}"


SERVICES = (
    ServiceSpec("intake", 8001),
    ServiceSpec("complaints", 8002),
    ServiceSpec("feedback", 8003),
    ServiceSpec("metrics", 8004),
)
SIMULATOR_SOURCE = "simulator"
CASE_MANAGER = "case-manager"
CRM = "crm"
DASHBOARD = "metrics-dashboard"  # the metrics service reading the worklist and comments


@dataclass(frozen=True, slots=True)
class Credentials:
    """Fresh secrets for one run: API keys, answer-link secret, metrics API tokens."""

    intake_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    case_manager_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    crm_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    dashboard_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    manager_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    ops_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))


def service_environment(
    stack: infra.LocalInfra, credentials: Credentials, ports: Mapping[str, int]
) -> dict[str, dict[str, str]]:
    """Each service's environment: shared addresses plus its own keys and port."""
    common = {
        "CIVICPULSE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "CIVICPULSE_DATABASE_URL": stack.database_url,
        # On a cluster, topics get replicas on 3 brokers (2 in sync), as in production.
        "CIVICPULSE_TOPIC_REPLICATION_FACTOR": str(infra.replication_for(len(stack.kafka_nodes))),
    }
    own = {
        "intake": {
            "CIVICPULSE_INTAKE_API_KEYS": json.dumps(
                {SIMULATOR_SOURCE: hash_api_key(credentials.intake_key)}
            ),
        },
        "complaints": {
            "CIVICPULSE_COMPLAINTS_API_KEYS": json.dumps(
                {CASE_MANAGER: hash_api_key(credentials.case_manager_key)}
            ),
            # The dashboard only reads the worklist: a read-only key, 403 on every write.
            "CIVICPULSE_COMPLAINTS_READ_API_KEYS": json.dumps(
                {DASHBOARD: hash_api_key(credentials.dashboard_key)}
            ),
            "CIVICPULSE_COMPLAINTS_TIMER_POLL_SECONDS": "1",
        },
        "feedback": {
            "CIVICPULSE_FEEDBACK_API_KEYS": json.dumps(
                {
                    CRM: hash_api_key(credentials.crm_key),
                    DASHBOARD: hash_api_key(credentials.dashboard_key),
                }
            ),
            "CIVICPULSE_FEEDBACK_TOKEN_SECRET": credentials.token_secret,
            "CIVICPULSE_FEEDBACK_PUBLIC_URL": f"http://127.0.0.1:{ports['feedback']}",
            "CIVICPULSE_FEEDBACK_DELAY_HOURS": "0",
        },
        "metrics": {
            "CIVICPULSE_METRICS_API_TOKENS": json.dumps(
                {
                    "manager": {"role": "manager", "hash": hash_api_key(credentials.manager_token)},
                    "ops": {"role": "ops", "hash": hash_api_key(credentials.ops_token)},
                }
            ),
            "CIVICPULSE_METRICS_COMPLAINTS_URL": f"http://127.0.0.1:{ports['complaints']}",
            "CIVICPULSE_METRICS_COMPLAINTS_API_KEY": credentials.dashboard_key,
            "CIVICPULSE_METRICS_FEEDBACK_URL": f"http://127.0.0.1:{ports['feedback']}",
            "CIVICPULSE_METRICS_FEEDBACK_API_KEY": credentials.dashboard_key,
        },
    }
    return {
        spec.name: {**common, "CIVICPULSE_HTTP_PORT": str(ports[spec.name]), **own[spec.name]}
        for spec in SERVICES
    }


@dataclass
class RunningSystem:
    infra: infra.LocalInfra
    credentials: Credentials
    services: dict[str, ServiceProcess]
    prometheus: subprocess.Popen[bytes] | None = None
    prometheus_url: str | None = None
    alertmanager: subprocess.Popen[bytes] | None = None
    alertmanager_url: str | None = None
    webhook: WebhookReceiver | None = None

    def url(self, service: str) -> str:
        return self.services[service].base_url

    def restart(self, service: str, *, kill: bool) -> None:
        """Stop one service (SIGKILL, or SIGTERM) and start it again, ready."""
        process = self.services[service]
        if kill:
            process.kill()
        else:
            process.stop()
        process.start()
        process.wait_healthy()

    def stop(self) -> None:
        for monitor in (self.prometheus, self.alertmanager):
            if monitor is not None and monitor.poll() is None:
                monitor.terminate()
                monitor.wait(timeout=30)
        if self.webhook is not None:
            self.webhook.stop()
        for process in reversed(list(self.services.values())):
            process.stop()


def start_services(
    stack: infra.LocalInfra,
    log_dir: Path,
    credentials: Credentials,
    *,
    say: Say | None = None,
    extra_env: Mapping[str, Mapping[str, str]] | None = None,
    preferred_ports: bool = True,
) -> RunningSystem:
    """Start every service (in dependency order) and wait until each is healthy.

    Tests pass `preferred_ports=False`: with the usual ports, a developer's
    `civicpulse dev` could answer the health check of a service that failed to bind.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    ports: dict[str, int] = {}
    for spec in SERVICES:
        preferred = spec.preferred_port if preferred_ports else None
        ports[spec.name] = infra.pick_free_port(preferred, avoid=list(ports.values()))
    environments = service_environment(stack, credentials, ports)
    system = RunningSystem(stack, credentials, {})
    try:
        for spec in SERVICES:
            env = {**environments[spec.name], **(extra_env or {}).get(spec.name, {})}
            process = ServiceProcess(spec.module, env, log_dir / f"{spec.name}.log")
            if say:
                say(f"starting {spec.name} on port {ports[spec.name]}…")
            process.start()
            system.services[spec.name] = process
            process.wait_healthy()
    except BaseException:
        system.stop()
        raise
    return system


def render_prometheus_config(
    system: RunningSystem, target: Path, *, own_port: int, scrape_seconds: int
) -> Path:
    """deploy/prometheus/prometheus.local.yml with this run's ports and absolute rule paths."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"]["scrape_interval"] = f"{scrape_seconds}s"
    config["global"]["evaluation_interval"] = f"{scrape_seconds}s"
    config["rule_files"] = [
        str(PROMETHEUS_CONFIG.parent / pattern) for pattern in config.get("rule_files", [])
    ]
    for job in config["scrape_configs"]:
        name = job["job_name"].removeprefix("civicpulse-")
        port = system.services[name].port if name in system.services else own_port
        for static in job["static_configs"]:
            static["targets"] = [f"127.0.0.1:{port}"]
    if system.alertmanager_url is not None:
        address = system.alertmanager_url.removeprefix("http://")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [address]}]}]}
    else:
        config.pop("alerting", None)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def start_prometheus(
    system: RunningSystem,
    run_dir: Path,
    *,
    scrape_seconds: int = 5,
    preferred_port: int | None = 9090,
) -> str:
    """Run Debian's Prometheus on the rendered config; returns its URL.

    Tests pass `preferred_port=None`, as they pass `preferred_ports=False` to
    `start_services`: another run's Prometheus on 9090 would answer the readiness check.
    """
    binary = shutil.which("prometheus")
    if binary is None:
        raise infra.InfraError("prometheus is not installed (Debian package 'prometheus')")
    run_dir.mkdir(parents=True, exist_ok=True)
    port = infra.pick_free_port(preferred_port)
    config = render_prometheus_config(
        system, run_dir / "prometheus.yml", own_port=port, scrape_seconds=scrape_seconds
    )
    log = (run_dir / "prometheus.log").open("ab")
    system.prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={run_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    system.prometheus_url = f"http://127.0.0.1:{port}"
    _wait_ready(f"{system.prometheus_url}/-/ready")
    return system.prometheus_url


def start_alerting(system: RunningSystem, run_dir: Path) -> str:
    """Alertmanager on the deployed routes, every receiver a local logging webhook.

    Start it before Prometheus, whose rendered config then points at it.
    """
    system.webhook = WebhookReceiver(run_dir / "notifications.jsonl").start()
    system.alertmanager, url = start_alertmanager(run_dir, system.webhook.url)
    _wait_ready(f"{url}/-/ready")
    system.alertmanager_url = url
    return url


def _wait_ready(url: str, attempts: int = 100) -> None:
    with httpx.Client(timeout=1) as client:
        for _ in range(attempts):
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise infra.InfraError(f"{url} did not become ready")
