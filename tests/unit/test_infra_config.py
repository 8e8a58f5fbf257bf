"""Pure helpers of the local launcher: no broker, no database."""

from __future__ import annotations

import base64
import shlex
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from civicpulse.cli import build_parser
from civicpulse.infra import (
    InfraError,
    KafkaNode,
    LocalInfra,
    PostgresNode,
    infra_status,
    load_state,
    min_insync_for,
    new_cluster_id,
    pick_free_port,
    render_env_file,
    render_server_properties,
    replication_for,
    save_state,
)


def _parse_properties(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {line.partition("=")[0]: line.partition("=")[2] for line in lines}


def _sample_infra(run_dir: Path) -> LocalInfra:
    return LocalInfra(
        run_dir=run_dir,
        kafka=KafkaNode(
            version="4.1.1",
            port=19092,
            controller_port=40001,
            cluster_id="n8ne6XU2Qb2Y1WQpjNdnPw",
            lib_dir=Path("/cache/kafka-4.1.1/lib"),
            home=run_dir / "kafka",
            pid=1234,
        ),
        postgres=PostgresNode(
            port=15432,
            home=run_dir / "postgres",
            bin_dir=Path("/usr/lib/postgresql/15/bin"),
            os_user="postgres",
            pid=None,
        ),
    )


def test_server_properties_single_node_kraft_on_loopback(tmp_path: Path) -> None:
    props = _parse_properties(render_server_properties(19092, 40001, tmp_path / "data"))

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:40001"
    expected_listeners = "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:40001"
    assert props["listeners"] == expected_listeners
    assert props["advertised.listeners"] == expected_listeners
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["log.dirs"] == str(tmp_path / "data")


def test_server_properties_suit_one_broker_and_fast_tests(tmp_path: Path) -> None:
    props = _parse_properties(render_server_properties(1, 2, tmp_path))

    replication = [key for key in props if key.endswith(("replication.factor", "min.isr"))]
    assert len(replication) == 5
    assert all(props[key] == "1" for key in replication)
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["num.partitions"] == "3"
    assert props["auto.create.topics.enable"] == "false"


def test_pick_free_port_keeps_a_free_preferred_port() -> None:
    free = pick_free_port()
    assert pick_free_port(free) == free


def test_pick_free_port_avoids_a_busy_preferred_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        chosen = pick_free_port(taken)
    assert chosen != taken
    assert 0 < chosen < 65536


def test_pick_free_port_honours_avoid() -> None:
    free = pick_free_port()
    assert pick_free_port(free, avoid=[free]) != free


def test_cluster_id_is_kafka_shaped() -> None:
    ids = {new_cluster_id() for _ in range(200)}

    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_state_round_trip(tmp_path: Path) -> None:
    infra = _sample_infra(tmp_path)

    save_state(infra)

    assert load_state(tmp_path) == infra


def test_env_file_has_the_settings_variables(tmp_path: Path) -> None:
    save_state(_sample_infra(tmp_path))

    lines = (tmp_path / "infra.env").read_text().splitlines()
    env = dict(shlex.split(line)[0].split("=", 1) for line in lines)
    assert env["CIVICPULSE_KAFKA_BOOTSTRAP"] == "127.0.0.1:19092"
    assert env["CIVICPULSE_DATABASE_URL"] == "postgresql://civicpulse@127.0.0.1:15432/civicpulse"
    assert env["CIVICPULSE_KAFKA_PID"] == "1234"
    assert env["CIVICPULSE_POSTGRES_PID"] == ""


def test_env_file_quotes_values_for_the_shell() -> None:
    text = render_env_file({"A": "plain", "B": "has space"})

    assert text == "A=plain\nB='has space'\n"


def test_load_state_without_a_file_is_none(tmp_path: Path) -> None:
    assert load_state(tmp_path) is None


def test_load_state_rejects_a_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "infra.json").write_text('{"run_dir": "/x"}')

    with pytest.raises(InfraError, match="corrupt state file"):
        load_state(tmp_path)


def test_status_of_an_empty_run_dir_is_stopped(tmp_path: Path) -> None:
    assert [(c.name, c.running) for c in infra_status(tmp_path)] == [
        ("kafka", False),
        ("postgres", False),
    ]


def test_cli_parses_infra_down_options(tmp_path: Path) -> None:
    args = build_parser().parse_args(["infra", "down", "--keep-data", "--run-dir", str(tmp_path)])

    assert args.command == "infra"
    assert args.action == "down"
    assert args.keep_data is True
    assert args.run_dir == tmp_path
    assert callable(args.handler)


def test_server_properties_of_a_three_node_cluster(tmp_path: Path) -> None:
    voters = "1@127.0.0.1:40001,2@127.0.0.1:40002,3@127.0.0.1:40003"
    props = _parse_properties(
        render_server_properties(
            19093, 40002, tmp_path, node_id=2, quorum_voters=voters, replication=3
        )
    )

    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == voters
    assert "controller.quorum.bootstrap.servers" not in props
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"


def test_a_cluster_state_round_trips_with_every_node(tmp_path: Path) -> None:
    single = _sample_infra(tmp_path)
    peers = tuple(
        replace(single.kafka, port=19092 + n, node_id=n + 1, home=tmp_path / f"kafka-{n + 1}")
        for n in (1, 2)
    )
    cluster = replace(single, kafka_peers=peers)

    save_state(cluster)

    assert load_state(tmp_path) == cluster
    assert cluster.kafka_bootstrap == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"


def test_replication_and_min_insync_follow_the_cluster_size() -> None:
    assert [replication_for(n) for n in (1, 2, 3, 5)] == [1, 2, 3, 3]
    assert [min_insync_for(n) for n in (1, 2, 3)] == [1, 2, 2]


def test_cli_parses_the_number_of_brokers() -> None:
    assert build_parser().parse_args(["infra", "up", "--brokers", "3"]).brokers == 3
    assert build_parser().parse_args(["infra", "up"]).brokers is None


def _server_settings(options: str) -> dict[str, str]:
    words = shlex.split(options)
    pairs = [words[i + 1] for i, word in enumerate(words) if word == "-c"]
    return dict(pair.split("=", 1) for pair in pairs)


@pytest.mark.parametrize("installed", [True, False])
def test_postgres_runs_autovacuum_every_five_seconds_and_preloads_statement_statistics_if_installed(
    tmp_path: Path, installed: bool
) -> None:
    """A new database's statements are planned without statistics until autovacuum's
    first visit (bench/README.md): the launcher's databases are all new, so it visits
    every 5 s; pg_stat_statements is preloaded only where the contrib module exists."""
    from civicpulse.infra.postgres import _server_options

    bin_dir = tmp_path / "bin"  # no pg_config here: the module directory is ../lib
    bin_dir.mkdir()
    (tmp_path / "lib").mkdir()
    if installed:
        (tmp_path / "lib" / "pg_stat_statements.so").write_bytes(b"")
    node = replace(_sample_infra(tmp_path).postgres, bin_dir=bin_dir)

    settings = _server_settings(_server_options(node))

    assert settings["autovacuum_naptime"] == "5s"
    assert settings["fsync"] == "off"
    assert settings.get("shared_preload_libraries") == ("pg_stat_statements" if installed else None)
