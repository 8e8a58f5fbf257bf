"""A real alert, end to end: Prometheus fires it, Alertmanager routes it, the webhook gets it.

Debian's `prometheus` and `prometheus-alertmanager` run in a temporary directory.
Alertmanager runs on deploy/alertmanager/alertmanager.yml's routes and inhibitions,
its receivers pointed at the local webhook that `civicpulse dev` uses too. The
rules are the deployed ones (expression and labels), with `for` shortened to 0 so
the test need not wait minutes; the lag alert's expression is a constant while the
service is down, since only its labels matter to the inhibition. The scraped "metrics service" is a
closed port, so `up` is 0 and CivicPulseServiceDown fires.
"""

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from civicpulse.alerting import WebhookReceiver, start_alertmanager
from civicpulse.infra import pick_free_port
from tests.unit.test_deploy_files import RULE_FILES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
DEADLINE_SECONDS = 60
T = TypeVar("T")
# The lag a stopped consumer piles up, from the moment it is seen down: firing in the
# same evaluation as CivicPulseServiceDown, so it can never reach Alertmanager first.
LAG_WHILE_DOWN = 'vector(5000) and on() (up{job="civicpulse-metrics"} == 0)'


def _deployed_rule(name: str) -> dict[str, Any]:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == name:
                    return dict(rule)
    raise KeyError(name)


def _eventually(probe: Callable[[], T | None], what: str) -> T:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.25)
    raise AssertionError(f"not within {DEADLINE_SECONDS} s: {what}")


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    def ready() -> bool | None:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200 or None
        except httpx.HTTPError:
            return None

    _eventually(ready, f"{url} ready")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(tmp_path / "notifications.jsonl").start()
    yield receiver
    receiver.stop()


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: WebhookReceiver) -> Iterator[str]:
    if shutil.which("prometheus-alertmanager") is None and shutil.which("alertmanager") is None:
        pytest.fail("apt-get install -y prometheus-alertmanager (CI installs it)")
    process, url = start_alertmanager(tmp_path / "alertmanager", webhook.url, group_wait="1s")
    try:
        _wait_ready(url, process, tmp_path / "alertmanager" / "alertmanager.log")
        yield url
    finally:
        _stop(process)


@pytest.fixture
def prometheus(tmp_path: Path, alertmanager: str) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not on PATH: apt-get install -y prometheus (CI installs it)")
    folder = tmp_path / "prometheus"
    folder.mkdir()
    rules = [
        {**_deployed_rule("CivicPulseServiceDown"), "for": "0s"},
        {**_deployed_rule("CivicPulseConsumerLagHigh"), "for": "0s", "expr": LAG_WHILE_DOWN},
    ]
    (folder / "rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "under-test", "rules": rules}]})
    )
    dead_port = pick_free_port()  # nobody listens: the metrics service is "down"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(folder / "rules.yml")],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [alertmanager.removeprefix("http://")]}]}
            ]
        },
        "scrape_configs": [
            {
                "job_name": "civicpulse-metrics",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{dead_port}"], "labels": {"service": "metrics"}}
                ],
            }
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = pick_free_port()
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                # Alerts fired before the Alertmanager is discovered are resent this
                # soon, rather than after the default minute.
                "--rules.alert.resend-delay=1s",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, folder / "prometheus.log")
        yield url
    finally:
        _stop(process)


def test_a_service_down_alert_reaches_the_operations_webhook_and_inhibits_its_lag_alert(
    prometheus: str, alertmanager: str, webhook: WebhookReceiver
) -> None:
    def delivered() -> dict[str, Any] | None:
        for notification in list(webhook.received):
            for alert in notification["alerts"]:
                if alert["labels"]["alertname"] == "CivicPulseServiceDown":
                    return {"receiver": notification["receiver"], **alert}
        return None

    def lag_alert_in_alertmanager() -> dict[str, Any] | None:
        response = httpx.get(
            f"{alertmanager}/api/v2/alerts",
            params={"filter": 'alertname="CivicPulseConsumerLagHigh"'},
            timeout=5,
        )
        alerts: list[dict[str, Any]] = response.json()
        return alerts[0] if alerts and alerts[0]["status"]["inhibitedBy"] else None

    down = _eventually(delivered, "CivicPulseServiceDown at the webhook")
    lag = _eventually(lag_alert_in_alertmanager, "the lag alert, inhibited, in Alertmanager")

    assert down["receiver"] == "operations-urgent"  # team operations, severity critical
    assert down["status"] == "firing"
    assert down["labels"]["service"] == "metrics"
    assert lag["status"]["state"] == "suppressed"
    assert lag["labels"]["service"] == "metrics"
    logged = webhook.log_path.read_text()
    assert "CivicPulseServiceDown" in logged
    notified = {
        alert["labels"]["alertname"]
        for notification in webhook.received
        for alert in notification["alerts"]
    }
    assert "CivicPulseConsumerLagHigh" not in notified
