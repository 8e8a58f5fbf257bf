"""The deployment files agree with the code and with each other.

Compose, Prometheus (config, alert rules and their unit tests) and Grafana are
read as files: no Docker is needed. The promtool checks need Debian's
`prometheus` package (`apt-get install -y prometheus`), which CI installs; without
it they fail rather than skip, so a missing install cannot pass unnoticed.
"""

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.complaints.handlers import ComplaintsMetrics
from services.feedback.handlers import FeedbackMetrics
from services.feedback.sender import SenderMetrics
from services.intake.handlers import IntakeMetrics
from services.intake.settings import IntakeSettings
from services.metrics.applier import ConsumerMetrics
from services.metrics.gauges import KpiGauges

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
PROMETHEUS_COMPOSE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
PROMETHEUS_LOCAL_CONFIG = PROMETHEUS_DIR / "prometheus.local.yml"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
GRAFANA_DIR = REPO / "deploy" / "grafana"
GRAFANA_DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARD_FILES = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))

INFRASTRUCTURE = ("kafka", "postgres")
# shared/http.serve gives uvicorn this long to drain before the process exits.
UVICORN_GRACEFUL_SHUTDOWN_S = 30
EXPECTED_ALERTS = (
    "CivicPulseServiceDown",
    "CivicPulseDeadLettersGrowing",
    "CivicPulseIntakeRejectingMostRecords",
    "CivicPulseConsumerLagHigh",
    "CivicPulseEventDeadLettersGrowing",
    "CivicPulseComplaintDeadlineBreached",
    "CivicPulseSurgeDetected",
)
# Every service's scrape job and port, in compose and locally.
SERVICE_PORTS = {"intake": 8001, "complaints": 8002, "feedback": 8003, "metrics": 8004}
# Compose services that run only under a profile (`civicpulse dev` never runs them), and
# the command each runs instead of `python -m services.<name>`.
PROFILE_COMMANDS = {"feedback-sender": ["python", "-m", "services.feedback", "send"]}
INSTALL_PROMTOOL = (
    "promtool is not on PATH: install Debian's prometheus package "
    "(apt-get update && apt-get install -y prometheus); CI installs it"
)

# -- loading -----------------------------------------------------------------------


def _load_yaml(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path.relative_to(REPO)}: expected a YAML mapping"
    return document


def _compose() -> dict[str, Any]:
    return _load_yaml(COMPOSE_FILE)


def _compose_services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _built_services() -> dict[str, dict[str, Any]]:
    """The compose services built from this repository's Dockerfile."""
    return {name: spec for name, spec in _compose_services().items() if "build" in spec}


BUILT_SERVICES = sorted(_built_services())


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "write `environment` as a mapping"
    return environment


def _http_port(service: dict[str, Any]) -> int:
    return int(_environment(service)["CIVICPULSE_HTTP_PORT"])


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if isinstance(command, str):
        return shlex.split(command)
    assert isinstance(command, list), "a built service must set `command`"
    return [str(part) for part in command]


def _build_source(build: str | dict[str, Any]) -> tuple[str, str]:
    """(context, Dockerfile) of a compose `build` entry, short or long form."""
    if isinstance(build, str):
        return build, "Dockerfile"
    return build.get("context", "."), build.get("dockerfile", "Dockerfile")


def _seconds(duration: str) -> float:
    """Seconds in a compose duration such as `40s` or `1m30s`."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", duration)
    assert parts, f"not a duration: {duration!r}"
    scale = {"h": 3600, "m": 60, "s": 1}
    return sum(float(amount) * scale[unit] for amount, unit in parts)


def _scrape_targets(config_file: Path) -> dict[str, list[str]]:
    """Each scrape job's targets: static ones, and names found by DNS with their port."""
    targets: dict[str, list[str]] = {}
    for job in _load_yaml(config_file)["scrape_configs"]:
        targets[job["job_name"]] = [
            target for static in job.get("static_configs", []) for target in static["targets"]
        ] + [
            f"{name}:{dns['port']}"
            for dns in job.get("dns_sd_configs", [])
            for name in dns["names"]
        ]
    return targets


def _alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in _load_yaml(path)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in rows."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboards() -> dict[str, dict[str, Any]]:
    dashboards: dict[str, dict[str, Any]] = {}
    for path in DASHBOARD_FILES:
        document = json.loads(path.read_text())
        assert isinstance(document, dict)
        dashboards[path.name] = document
    return dashboards


def _dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard target."""
    return [
        (f"{name}: {panel.get('title')!r}", target["expr"])
        for name, dashboard in _dashboards().items()
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def _alert_queries() -> list[tuple[str, str]]:
    return [(f"alert {rule['alert']}", rule["expr"]) for rule in _alert_rules()]


# -- metric names ------------------------------------------------------------------

# Sample names Prometheus sees for each metric family type.
SAMPLE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def _metric_names(register: Callable[[CollectorRegistry], object]) -> set[str]:
    registry = CollectorRegistry()
    register(registry)
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ()))
    return names


# Each service's metric-name prefix and how to build its metrics. Add a service
# here when its metrics appear in a dashboard or an alert.
def _metrics_service_metrics(registry: CollectorRegistry) -> None:
    KpiGauges(registry)
    ConsumerMetrics(registry)


def _feedback_metrics(registry: CollectorRegistry) -> None:
    FeedbackMetrics(registry)
    SenderMetrics(registry)


SERVICE_METRICS: dict[str, Callable[[CollectorRegistry], object]] = {
    "intake": IntakeMetrics,
    "complaints": ComplaintsMetrics,
    "feedback": _feedback_metrics,
    "metrics": _metrics_service_metrics,
}
SERVICE_METRIC_NAME = re.compile(
    r"\b(?:" + "|".join(map(re.escape, SERVICE_METRICS)) + r")_[a-z0-9_]+\b"
)
STRING_LITERAL = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")


def _service_metrics_used(expr: str) -> set[str]:
    # Label values ("...") are not metric names.
    return set(SERVICE_METRIC_NAME.findall(STRING_LITERAL.sub('""', expr)))


# -- compose -----------------------------------------------------------------------


def test_compose_file_follows_the_compose_spec_without_a_version_key() -> None:
    compose = _compose()

    assert "version" not in compose
    unknown = set(compose) - {"name", "services", "volumes", "networks", "secrets", "configs"}
    assert all(key.startswith("x-") for key in unknown), unknown
    assert {"kafka", "postgres", "intake", "prometheus", "grafana"} <= set(compose["services"])


def test_services_off_the_kpi_path_get_a_lower_cpu_share_than_intake_and_metrics() -> None:
    """docs/production.md, "CPU priority": complaints and feedback yield the CPU to the
    services between a contact and its KPI (compose's default share is 1,024)."""
    services = _built_services()
    share = {name: services[name].get("cpu_shares", 1024) for name in BUILT_SERVICES}

    on_path = {share["intake"], share["metrics"]}
    off_path = {share[name] for name in BUILT_SERVICES if name not in ("intake", "metrics")}
    assert on_path == {1024}
    assert off_path
    assert max(off_path) < min(on_path), share


def test_intake_is_built_from_the_dockerfile() -> None:
    assert "intake" in BUILT_SERVICES
    assert DOCKERFILE.is_file()


@pytest.mark.parametrize("name", BUILT_SERVICES)
def test_built_service_runs_its_own_module_from_the_dockerfile(name: str) -> None:
    service = _built_services()[name]

    expected = PROFILE_COMMANDS.get(name, ["python", "-m", f"services.{name}"])

    assert _build_source(service["build"]) == (".", "Dockerfile")
    assert _command(service) == expected
    assert (REPO / expected[2].replace(".", "/") / "__main__.py").is_file()


@pytest.mark.parametrize("name", BUILT_SERVICES)
def test_built_service_has_a_healthcheck_on_its_own_port(name: str) -> None:
    service = _built_services()[name]
    port = _http_port(service)

    test = service["healthcheck"]["test"]
    assert isinstance(test, list)
    assert test[0] == "CMD"
    assert f"http://localhost:{port}/healthz" in " ".join(test)
    assert f"{port}:{port}" in service.get("ports", [])
    assert _environment(service)["CIVICPULSE_HTTP_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("name", BUILT_SERVICES)
def test_built_service_waits_for_healthy_kafka_and_postgres(name: str) -> None:
    depends_on = _built_services()[name]["depends_on"]

    assert isinstance(depends_on, dict), "use the long form of depends_on with conditions"
    for dependency in INFRASTRUCTURE:
        assert depends_on[dependency] == {"condition": "service_healthy"}


@pytest.mark.parametrize("name", BUILT_SERVICES)
def test_built_service_gets_longer_to_stop_than_uvicorn_drains(name: str) -> None:
    grace = _seconds(_built_services()[name]["stop_grace_period"])

    assert grace > UVICORN_GRACEFUL_SHUTDOWN_S


@pytest.mark.parametrize("name", BUILT_SERVICES)
def test_built_service_is_scraped_by_prometheus_in_compose_and_locally(name: str) -> None:
    port = _http_port(_built_services()[name])
    job = f"civicpulse-{name}"

    assert _scrape_targets(PROMETHEUS_COMPOSE_CONFIG)[job] == [f"{name}:{port}"]
    if name in PROFILE_COMMANDS:
        # Found by name, so an unused profile leaves no target down; not run locally.
        assert _built_services()[name]["profiles"]
        assert job not in _scrape_targets(PROMETHEUS_LOCAL_CONFIG)
    else:
        assert _scrape_targets(PROMETHEUS_LOCAL_CONFIG)[job] == [f"127.0.0.1:{port}"]


def test_every_healthy_condition_waits_on_a_service_with_a_healthcheck() -> None:
    services = _compose_services()

    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        for dependency in depends_on:
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if isinstance(depends_on, dict):
                condition = depends_on[dependency]["condition"]
                if condition == "service_healthy":
                    assert "healthcheck" in services[dependency], dependency


def test_healthchecks_use_the_exec_or_shell_form() -> None:
    for name, service in _compose_services().items():
        if "healthcheck" in service:
            test = service["healthcheck"]["test"]
            assert isinstance(test, list), name
            assert test[0] in {"CMD", "CMD-SHELL"}, name
            assert len(test) > 1, name


def test_named_volumes_are_declared_and_bind_mounts_exist() -> None:
    compose = _compose()
    declared = set(compose.get("volumes") or {})

    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: {source} is missing"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_every_required_variable_has_a_demo_value_in_env_example() -> None:
    required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", COMPOSE_FILE.read_text()))
    example = _env_example()

    assert required >= {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "CIVICPULSE_INTAKE_API_KEYS"}
    assert required <= set(example)
    assert all(example[name] for name in required)


def test_env_example_api_keys_are_valid_intake_settings() -> None:
    keys = json.loads(_env_example()["CIVICPULSE_INTAKE_API_KEYS"])

    assert IntakeSettings(intake_api_keys=keys).intake_api_keys == keys


def _env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = shlex.split(line)[0].partition("=")
            values[name] = value
    return values


# -- alert rules -------------------------------------------------------------------


def test_the_expected_alerts_exist() -> None:
    assert {rule["alert"] for rule in _alert_rules()} >= set(EXPECTED_ALERTS)


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_alert_has_summary_description_and_runbook(rule: dict[str, Any]) -> None:
    annotations = rule.get("annotations", {})

    assert annotations.get("summary")
    assert annotations.get("description")
    assert annotations.get("runbook_url") == f"docs/runbooks.md#{rule['alert'].lower()}"
    assert rule.get("labels", {}).get("severity") in {"critical", "warning"}


# -- metric names ------------------------------------------------------------------


def test_intake_registers_the_metrics_the_alerts_are_about() -> None:
    names = _metric_names(IntakeMetrics)

    assert {
        "intake_records_accepted_total",
        "intake_records_rejected_total",
        "intake_records_dead_lettered_total",
    } <= names


def test_dashboards_and_alerts_use_only_metrics_the_services_register() -> None:
    registered = {name for register in SERVICE_METRICS.values() for name in _metric_names(register)}
    queries = _dashboard_queries() + _alert_queries()
    used = {(where, name) for where, expr in queries for name in _service_metrics_used(expr)}

    assert len({name for _, name in used}) >= 3, "expected the intake metrics to be used"
    unknown = sorted(f"{where}: {name}" for where, name in used if name not in registered)
    assert not unknown, "metrics no service registers:\n" + "\n".join(unknown)


def test_metric_name_extraction_ignores_label_values() -> None:
    expr = 'sum(rate(intake_records_rejected_total{reason="intake_fake_thing"}[5m]))'

    assert _service_metrics_used(expr) == {"intake_records_rejected_total"}


# -- Grafana -----------------------------------------------------------------------


def _datasource_uid() -> str:
    (datasource,) = _load_yaml(GRAFANA_DATASOURCES)["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in _compose_services()
    return str(datasource["uid"])


def test_the_datasource_is_prometheus_with_uid_prometheus() -> None:
    assert _datasource_uid() == "prometheus"


def test_dashboards_are_provisioned_from_where_compose_mounts_them() -> None:
    (provider,) = _load_yaml(GRAFANA_DASHBOARD_PROVIDERS)["providers"]
    mounts = _compose_services()["grafana"]["volumes"]

    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_dashboards_are_valid_and_query_the_provisioned_datasource() -> None:
    uid = _datasource_uid()
    dashboards = _dashboards()

    assert {"operations.json", "customer_service.json"} <= set(dashboards)
    assert len({d["uid"] for d in dashboards.values()}) == len(dashboards)
    for name, dashboard in dashboards.items():
        assert dashboard["schemaVersion"] == 39, name
        panels = list(_panels(dashboard["panels"]))
        assert len({panel["id"] for panel in panels}) == len(panels), name
        for panel in panels:
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == uid, (name, panel.get("title"))


def test_operations_dashboard_shows_intake_and_service_health() -> None:
    queries = {expr for _, expr in _dashboard_queries()}

    assert {
        "sum by (event_type) (rate(intake_records_accepted_total[5m]))",
        "sum by (reason) (rate(intake_records_rejected_total[5m]))",
        "sum by (reason) (rate(intake_records_dead_lettered_total[5m]))",
        'up{job=~"civicpulse-.*"}',
    } <= queries


def test_customer_service_dashboard_shows_the_managers_kpis_by_area_and_channel() -> None:
    customer = _dashboards()["customer_service.json"]
    queries = " ".join(
        target["expr"] for panel in _panels(customer["panels"]) for target in panel["targets"]
    )

    for kpi in ("first_contact_resolution", "abandoned_call_rate", "service_level", "csat"):
        assert f'kpi="{kpi}"' in queries
    assert "max by (service_area)" in queries
    assert "max by (channel)" in queries


@pytest.mark.parametrize("config", [PROMETHEUS_COMPOSE_CONFIG, PROMETHEUS_LOCAL_CONFIG])
def test_prometheus_scrapes_every_service_on_its_port(config: Path) -> None:
    targets = _scrape_targets(config)
    local = config == PROMETHEUS_LOCAL_CONFIG

    for name, port in SERVICE_PORTS.items():
        host = "127.0.0.1" if local else name
        assert targets[f"civicpulse-{name}"] == [f"{host}:{port}"]


def test_compose_runs_alertmanager_on_the_config_and_prometheus_sends_to_it() -> None:
    services = _compose_services()
    alertmanager = services["alertmanager"]
    prometheus_config = _load_yaml(PROMETHEUS_COMPOSE_CONFIG)

    assert "./deploy/alertmanager:/etc/alertmanager:ro" in alertmanager["volumes"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    assert "alertmanager" in services["prometheus"]["depends_on"]
    targets = [
        target
        for manager in prometheus_config["alerting"]["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]
    assert targets == ["alertmanager:9093"]


def test_local_prometheus_sends_alerts_to_a_local_alertmanager() -> None:
    """`civicpulse dev` rewrites the address to the Alertmanager it started."""
    alerting = _load_yaml(PROMETHEUS_LOCAL_CONFIG)["alerting"]

    assert alerting["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]


# -- promtool ----------------------------------------------------------------------


def _promtool(*args: str | Path) -> None:
    """Run promtool; a missing promtool fails the test (not an error, not a skip)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(INSTALL_PROMTOOL)
    command = [promtool, *map(str, args)]
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, (
        f"{shlex.join(command)} exited {result.returncode}\n{result.stdout}{result.stderr}"
    )


@pytest.mark.parametrize(
    "config", [PROMETHEUS_COMPOSE_CONFIG, PROMETHEUS_LOCAL_CONFIG], ids=lambda path: path.name
)
def test_promtool_check_config(config: Path) -> None:
    _promtool("check", "config", config)


@pytest.mark.parametrize("rules", RULE_FILES, ids=lambda path: path.name)
def test_promtool_check_rules(rules: Path) -> None:
    _promtool("check", "rules", rules)


@pytest.mark.parametrize("tests", RULE_TEST_FILES, ids=lambda path: path.name)
def test_promtool_test_rules(tests: Path) -> None:
    _promtool("test", "rules", tests)


def test_every_rule_file_has_its_promtool_test_file() -> None:
    assert RULE_FILES
    assert [f"{path.stem}_test.yml" for path in RULE_FILES] == [p.name for p in RULE_TEST_FILES]


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool has no offline query parser, but it parses recording rules.
    queries = _dashboard_queries()
    rules = [
        {"record": f"civicpulse:dashboard_query_{index}", "expr": expr}
        for index, (_, expr) in enumerate(queries)
    ]
    rule_file = tmp_path / "dashboard_queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))

    _promtool("check", "rules", rule_file)


def test_every_alert_has_a_runbook_section() -> None:
    runbooks = (REPO / "docs" / "runbooks.md").read_text()
    sections = {
        line[3:].strip().lower() for line in runbooks.splitlines() if line.startswith("## ")
    }

    alerts = [
        rule["alert"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]

    assert alerts
    assert [alert for alert in alerts if alert.lower() not in sections] == []
