"""deploy/alertmanager/alertmanager.yml routes each CivicPulse alert to the right people.

Checked with Debian's `amtool` (package prometheus-alertmanager, which CI installs;
without it these tests fail rather than skip). Every alert rule carries the
labels the routes and inhibitions match on.
"""

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from civicpulse.alerting import ALERTMANAGER_CONFIG, render_alertmanager_config
from civicpulse.processes import ServiceProcess
from civicpulse.stack import SERVICES, Credentials, RunningSystem, render_prometheus_config
from tests.unit.test_deploy_files import PROMETHEUS_COMPOSE_CONFIG, _alert_rules

INSTALL_AMTOOL = (
    "amtool is not on PATH: apt-get install -y prometheus-alertmanager (CI installs it)"
)
TEAMS = {"operations", "complaints"}


def _amtool(*args: str | Path) -> str:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail(INSTALL_AMTOOL)
    command = [amtool, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, (
        f"{shlex.join(command)} exited {result.returncode}\n{result.stdout}{result.stderr}"
    )
    return result.stdout


def test_amtool_accepts_the_config() -> None:
    _amtool("check-config", ALERTMANAGER_CONFIG)


def test_amtool_accepts_the_config_civicpulse_dev_renders(tmp_path: Path) -> None:
    rendered = render_alertmanager_config(tmp_path / "am.yml", "http://127.0.0.1:1")

    _amtool("check-config", rendered)
    receivers = yaml.safe_load(rendered.read_text())["receivers"]
    assert all(set(r) == {"name", "webhook_configs"} for r in receivers)


ROUTES = [
    # (labels of an alert, the receiver it must reach)
    ("alertname=CivicPulseComplaintDeadlineBreached team=complaints severity=warning",
     "complaints-email"),
    ("alertname=CivicPulseComplaintActionsRefused team=complaints severity=warning",
     "complaints-email"),
    ("alertname=CivicPulseServiceDown team=operations severity=critical service=intake",
     "operations-urgent"),
    ("alertname=CivicPulseConsumerLagHigh team=operations severity=warning service=metrics",
     "operations-email"),
    ("alertname=CivicPulseDeadLettersGrowing team=operations severity=warning",
     "operations-email"),
    ("alertname=SomethingUnlabelled severity=critical", "operations-email"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("labels", "receiver"), ROUTES, ids=[r[1] + ":" + r[0].split()[0] for r in ROUTES]
)
def test_amtool_routes_each_alert_to_its_team(labels: str, receiver: str) -> None:
    _amtool(
        "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}", *labels.split(),
    )  # fmt: skip


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_rule_names_its_team_and_severity(rule: dict[str, object]) -> None:
    labels = rule["labels"]
    assert isinstance(labels, dict)
    assert labels["team"] in TEAMS
    assert labels["severity"] in {"critical", "warning"}


def test_complaint_breaches_go_to_the_complaints_team_and_pipeline_alerts_to_operations() -> None:
    teams = {rule["alert"]: rule["labels"]["team"] for rule in _alert_rules()}

    assert teams["CivicPulseComplaintDeadlineBreached"] == "complaints"
    assert teams["CivicPulseConsumerLagHigh"] == "operations"
    assert teams["CivicPulseServiceDown"] == "operations"


def test_a_service_down_inhibits_its_own_lag_alerts() -> None:
    """The lag alert carries the `service` label that `up` gets from its scrape job."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    lag = next(r for r in _alert_rules() if r["alert"] == "CivicPulseConsumerLagHigh")
    scrape_services = {
        static["labels"]["service"]
        for job in yaml.safe_load(PROMETHEUS_COMPOSE_CONFIG.read_text())["scrape_configs"]
        for static in job.get("static_configs", [])
        if "service" in static.get("labels", {})
    }

    assert {
        "source_matchers": ['alertname="CivicPulseServiceDown"'],
        "target_matchers": ['alertname="CivicPulseConsumerLagHigh"'],
        "equal": ["service"],
    } in config["inhibit_rules"]
    assert lag["labels"]["service"] in scrape_services


def test_civicpulse_dev_points_its_prometheus_at_its_alertmanager(tmp_path: Path) -> None:
    services = {
        spec.name: ServiceProcess(spec.module, {"CIVICPULSE_HTTP_PORT": str(9100 + i)}, tmp_path)
        for i, spec in enumerate(SERVICES)
    }
    no_infra: Any = None  # the rendering reads only the services' ports
    system = RunningSystem(
        no_infra, Credentials(), services, alertmanager_url="http://127.0.0.1:9555"
    )

    config = yaml.safe_load(
        render_prometheus_config(
            system, tmp_path / "p.yml", own_port=9091, scrape_seconds=5
        ).read_text()
    )

    assert config["alerting"]["alertmanagers"][0]["static_configs"] == [
        {"targets": ["127.0.0.1:9555"]}
    ]
