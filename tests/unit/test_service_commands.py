"""Every service's command line, built by `shared.commands`: the commands operators run."""

import importlib

import pytest

from shared.commands import Main

SERVICES = ["intake", "complaints", "feedback", "metrics"]
COMMANDS = {
    "intake": ["serve", "new-api-key"],
    "complaints": ["serve", "new-api-key"],
    "feedback": ["serve", "send", "new-api-key", "new-token-secret"],
    "metrics": ["serve", "rebuild", "new-api-token"],
}


def main_of(service: str) -> Main:
    main: Main = importlib.import_module(f"services.{service}.__main__").main
    return main


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_lists_its_commands_in_its_help(
    service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main_of(service)(["--help"])

    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert f"python -m services.{service}" in shown
    for command in COMMANDS[service]:
        assert command in shown


@pytest.mark.parametrize(
    ("service", "command"), [(s, c) for s, commands in COMMANDS.items() for c in commands]
)
def test_every_command_has_its_own_help(
    service: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main_of(service)([command, "--help"])

    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert f"python -m services.{service} {command}" in shown
    # What the command does between its usage and its options (`rebuild --help` had none).
    after_usage = shown.split("\n\n")[1]
    assert not after_usage.startswith(("options:", "positional arguments:")), shown


@pytest.mark.parametrize(
    ("service", "variable"),
    [
        ("intake", "CIVICPULSE_INTAKE_API_KEYS"),
        ("complaints", "CIVICPULSE_COMPLAINTS_API_KEYS"),
        ("feedback", "CIVICPULSE_FEEDBACK_API_KEYS"),
    ],
)
def test_new_api_key_prints_a_key_and_the_settings_entry_with_its_hash(
    service: str, variable: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main_of(service)(["new-api-key", "crm"]) == 0

    shown = capsys.readouterr().out
    assert "API key for crm" in shown
    assert f'add to {variable}: {{"crm": "sha256:' in shown


def test_complaints_makes_a_read_only_key_for_the_read_only_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main_of("complaints")(["new-api-key", "--read-only", "metrics-dashboard"]) == 0

    shown = capsys.readouterr().out
    assert 'add to CIVICPULSE_COMPLAINTS_READ_API_KEYS: {"metrics-dashboard": "sha256:' in shown


def test_metrics_makes_a_token_for_a_role(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_of("metrics")(["new-api-token", "finance-team", "manager"]) == 0

    assert '"finance-team": {"role": "manager", "hash": "sha256:' in capsys.readouterr().out


def test_metrics_refuses_an_unknown_role() -> None:
    with pytest.raises(SystemExit) as exited:
        main_of("metrics")(["new-api-token", "finance-team", "mayor"])

    assert exited.value.code == 2


def test_feedback_prints_a_token_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_of("feedback")(["new-token-secret"]) == 0

    [line] = capsys.readouterr().out.splitlines()
    name, _, secret = line.partition("=")
    assert name == "CIVICPULSE_FEEDBACK_TOKEN_SECRET"
    assert len(secret) >= 32


@pytest.mark.parametrize("service", SERVICES)
def test_bad_settings_stop_the_service_with_exit_code_2_naming_the_variable(
    service: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CIVICPULSE_HTTP_PORT", "0")

    assert main_of(service)([]) == 2

    shown = capsys.readouterr().err
    assert f"{service}: invalid settings" in shown
    assert "http_port" in shown
