"""Where the tests' Kafka and PostgreSQL come from: one choice, three ways.

1. `CIVICPULSE_KAFKA_BOOTSTRAP` and `CIVICPULSE_DATABASE_URL` set: use those
   (CI's `.ci/run`, or a developer's `civicpulse infra up`).
2. Otherwise, where a Docker engine answers: testcontainers.
3. Otherwise: the project's own launcher, on a fresh run directory.
"""

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Infrastructure:
    kafka_bootstrap: str
    database_url: str
    provided_by: str


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@contextmanager
def test_infrastructure(scratch: Path) -> Iterator[Infrastructure]:
    bootstrap = os.environ.get("CIVICPULSE_KAFKA_BOOTSTRAP")
    database_url = os.environ.get("CIVICPULSE_DATABASE_URL")
    if bootstrap and database_url:
        yield Infrastructure(bootstrap, database_url, "environment")
    elif docker_available():
        with _containers() as infrastructure:
            yield infrastructure
    else:
        with _local_launcher(scratch) as infrastructure:
            yield infrastructure


@contextmanager
def _containers() -> Iterator[Infrastructure]:
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    with (
        KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft() as kafka,
        PostgresContainer("postgres:15", username="civicpulse", dbname="civicpulse") as postgres,
    ):
        yield Infrastructure(
            kafka.get_bootstrap_server(),
            postgres.get_connection_url(driver=None),
            "testcontainers",
        )


@contextmanager
def _local_launcher(scratch: Path) -> Iterator[Infrastructure]:
    from civicpulse.infra import infra_down, infra_up

    run_dir = scratch / "infra"
    infra = infra_up(run_dir)
    try:
        yield Infrastructure(infra.kafka_bootstrap, infra.database_url, "local launcher")
    finally:
        infra_down(run_dir)
