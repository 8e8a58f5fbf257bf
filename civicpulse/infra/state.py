"""What a run directory holds: the nodes of a local stack, saved as infra.json and infra.env."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_KAFKA_VERSION = "4.1.1"
HOST = "127.0.0.1"
DEFAULT_KAFKA_PORT = 19092
DEFAULT_POSTGRES_PORT = 15432
DB_USER = "civicpulse"
DB_NAME = "civicpulse"
STATE_FILE = "infra.json"
ENV_FILE = "infra.env"

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_DEPLOY_DIR = REPO_ROOT / "deploy" / "kafka"
REPO_RUN_DIR = REPO_ROOT / ".civicpulse" / "run"

Say = Callable[[str], None]


class InfraError(RuntimeError):
    """The local infrastructure could not be started, checked or stopped."""


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node (broker and controller in one process) living in `home`.

    A single node forms its quorum alone (`quorum_voters` None); the nodes of
    a cluster share one `quorum_voters` list and have their own `node_id`.
    """

    version: str
    port: int
    controller_port: int
    cluster_id: str
    lib_dir: Path
    home: Path
    pid: int | None = None
    node_id: int = 1
    quorum_voters: str | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "server.log"

    @property
    def stdout_file(self) -> Path:
        return self.home / "kafka.out"


@dataclass(frozen=True)
class PostgresNode:
    """A throwaway PostgreSQL cluster; `home` holds data, socket and log."""

    port: int
    home: Path
    bin_dir: Path
    os_user: str | None  # the server's OS user when we are root, else None
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{DB_USER}@{HOST}:{self.port}/{DB_NAME}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"


@dataclass(frozen=True)
class LocalInfra:
    """A running local stack: what tests and services need to connect.

    `kafka` is the first (often only) Kafka node; `kafka_peers` the others of
    a cluster started with `brokers=N`.
    """

    run_dir: Path
    kafka: KafkaNode
    postgres: PostgresNode
    kafka_peers: tuple[KafkaNode, ...] = ()

    @property
    def kafka_nodes(self) -> tuple[KafkaNode, ...]:
        return (self.kafka, *self.kafka_peers)

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.kafka_nodes)

    @property
    def database_url(self) -> str:
        return self.postgres.url

    def env(self) -> dict[str, str]:
        """Environment variables for `shared.settings` plus pids and paths."""
        return {
            "CIVICPULSE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "CIVICPULSE_DATABASE_URL": self.database_url,
            "CIVICPULSE_RUN_DIR": str(self.run_dir),
            "CIVICPULSE_KAFKA_PID": str(self.kafka.pid or ""),
            "CIVICPULSE_KAFKA_LOG": str(self.kafka.log_file),
            "CIVICPULSE_KAFKA_LIB_DIR": str(self.kafka.lib_dir),
            "CIVICPULSE_POSTGRES_PID": str(self.postgres.pid or ""),
            "CIVICPULSE_POSTGRES_LOG": str(self.postgres.log_file),
            "CIVICPULSE_POSTGRES_DATA_DIR": str(self.postgres.data_dir),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "kafka_bootstrap": self.kafka_bootstrap,
            "database_url": self.database_url,
            "kafka": _paths_to_str(self.kafka.__dict__),
            "kafka_peers": [_paths_to_str(peer.__dict__) for peer in self.kafka_peers],
            "postgres": _paths_to_str(self.postgres.__dict__),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LocalInfra:
        p = data["postgres"]
        postgres = PostgresNode(
            port=int(p["port"]),
            home=Path(p["home"]),
            bin_dir=Path(p["bin_dir"]),
            os_user=None if p.get("os_user") is None else str(p["os_user"]),
            pid=_opt_int(p.get("pid")),
        )
        return cls(
            run_dir=Path(data["run_dir"]),
            kafka=_kafka_node_from_json(data["kafka"]),
            postgres=postgres,
            kafka_peers=tuple(_kafka_node_from_json(k) for k in data.get("kafka_peers", [])),
        )


def _kafka_node_from_json(k: dict[str, Any]) -> KafkaNode:
    return KafkaNode(
        version=str(k["version"]),
        port=int(k["port"]),
        controller_port=int(k["controller_port"]),
        cluster_id=str(k["cluster_id"]),
        lib_dir=Path(k["lib_dir"]),
        home=Path(k["home"]),
        pid=_opt_int(k.get("pid")),
        node_id=int(k.get("node_id", 1)),
        quorum_voters=None if k.get("quorum_voters") is None else str(k["quorum_voters"]),
    )


@dataclass(frozen=True)
class ComponentStatus:
    """One component as seen by `infra_status`."""

    name: str
    running: bool
    address: str | None
    pid: int | None


def _paths_to_str(values: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}


def _opt_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def save_state(infra: LocalInfra) -> None:
    """Write infra.json and infra.env into the run dir (atomically)."""
    write_atomic(infra.run_dir / STATE_FILE, json.dumps(infra.to_json(), indent=2) + "\n")
    write_atomic(infra.run_dir / ENV_FILE, render_env_file(infra.env()))


def load_state(run_dir: Path) -> LocalInfra | None:
    """Read infra.json, or None when there is none (or it is unreadable)."""
    path = run_dir / STATE_FILE
    try:
        return LocalInfra.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise InfraError(f"corrupt state file {path}: {exc}; delete {run_dir} to reset") from exc


def render_env_file(env: dict[str, str]) -> str:
    """KEY=value lines, quoted so that both `. file` and dotenv readers accept them."""
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items())


def write_atomic(path: Path, text: str) -> None:
    # Readers (a test session, `status`) never see half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def cache_dir() -> Path:
    """Where downloaded jars live (shared by all run dirs)."""
    override = os.environ.get("CIVICPULSE_CACHE_DIR")
    return Path(override) if override else Path.home() / ".cache" / "civicpulse"


def default_run_dir() -> Path:
    """The developer's run dir: `$CIVICPULSE_RUN_DIR` or `<repo>/.civicpulse/run`."""
    override = os.environ.get("CIVICPULSE_RUN_DIR")
    return Path(override) if override else REPO_RUN_DIR


def resolve_run_dir(run_dir: Path | None) -> Path:
    return (run_dir or default_run_dir()).expanduser().resolve()


def prepare_run_dir(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    # The default run dir sits inside the repo: keep it out of git.
    marker = run_dir.parent / ".gitignore"
    if run_dir == REPO_RUN_DIR and not marker.exists():
        marker.write_text("*\n")


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Serialise up/down on one run dir (e.g. two test workers starting at once)."""
    with (run_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
