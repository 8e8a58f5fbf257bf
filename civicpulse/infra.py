"""Local Kafka + PostgreSQL for development and tests, without Docker.

Kafka runs from Maven Central jars (see deploy/kafka/pom.xml), PostgreSQL from
the machine's own binaries. Everything lives in a run directory, so several
independent stacks (a developer's and a test session's) can run side by side.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "ComponentStatus",
    "InfraError",
    "KafkaNode",
    "LocalInfra",
    "PostgresNode",
    "cache_dir",
    "default_run_dir",
    "infra_down",
    "infra_status",
    "infra_up",
    "kafka_classpath",
    "kafka_lib_dir",
    "load_state",
    "new_cluster_id",
    "pick_free_port",
    "render_env_file",
    "render_server_properties",
    "running_infra",
    "save_state",
    "stop_component",
]

DEFAULT_KAFKA_VERSION = "4.1.1"
HOST = "127.0.0.1"
DEFAULT_KAFKA_PORT = 19092
DEFAULT_POSTGRES_PORT = 15432
DB_USER = "civicpulse"
DB_NAME = "civicpulse"
KAFKA_START_TIMEOUT_S = 90.0
KAFKA_STOP_TIMEOUT_S = 30.0
POSTGRES_READY_TIMEOUT_S = 60.0
LOG_TAIL_LINES = 40
STATE_FILE = "infra.json"
ENV_FILE = "infra.env"
KAFKA_READY_MARKER = "Kafka Server started"
# Unix socket paths are limited to 107 bytes; keep a margin for ".s.PGSQL.<port>".
MAX_SOCKET_DIR_LEN = 90

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_DEPLOY_DIR = REPO_ROOT / "deploy" / "kafka"
REPO_RUN_DIR = REPO_ROOT / ".civicpulse" / "run"

Say = Callable[[str], None]


class InfraError(RuntimeError):
    """The local infrastructure could not be started, checked or stopped."""


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class KafkaNode:
    """A single-node KRaft broker+controller living in `home`."""

    version: str
    port: int
    controller_port: int
    cluster_id: str
    lib_dir: Path
    home: Path
    pid: int | None = None

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
    """A running local stack: what tests and services need to connect."""

    run_dir: Path
    kafka: KafkaNode
    postgres: PostgresNode

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap

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
            "postgres": _paths_to_str(self.postgres.__dict__),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LocalInfra:
        k, p = data["kafka"], data["postgres"]
        kafka = KafkaNode(
            version=str(k["version"]),
            port=int(k["port"]),
            controller_port=int(k["controller_port"]),
            cluster_id=str(k["cluster_id"]),
            lib_dir=Path(k["lib_dir"]),
            home=Path(k["home"]),
            pid=_opt_int(k.get("pid")),
        )
        postgres = PostgresNode(
            port=int(p["port"]),
            home=Path(p["home"]),
            bin_dir=Path(p["bin_dir"]),
            os_user=None if p.get("os_user") is None else str(p["os_user"]),
            pid=_opt_int(p.get("pid")),
        )
        return cls(run_dir=Path(data["run_dir"]), kafka=kafka, postgres=postgres)


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
    _write_atomic(infra.run_dir / STATE_FILE, json.dumps(infra.to_json(), indent=2) + "\n")
    _write_atomic(infra.run_dir / ENV_FILE, render_env_file(infra.env()))


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


def _write_atomic(path: Path, text: str) -> None:
    # Readers (a test session, `status`) never see half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """Where downloaded jars live (shared by all run dirs)."""
    override = os.environ.get("CIVICPULSE_CACHE_DIR")
    return Path(override) if override else Path.home() / ".cache" / "civicpulse"


def default_run_dir() -> Path:
    """The developer's run dir: `$CIVICPULSE_RUN_DIR` or `<repo>/.civicpulse/run`."""
    override = os.environ.get("CIVICPULSE_RUN_DIR")
    return Path(override) if override else REPO_RUN_DIR


def _resolve_run_dir(run_dir: Path | None) -> Path:
    return (run_dir or default_run_dir()).expanduser().resolve()


def _prepare_run_dir(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    # The default run dir sits inside the repo: keep it out of git.
    marker = run_dir.parent / ".gitignore"
    if run_dir == REPO_RUN_DIR and not marker.exists():
        marker.write_text("*\n")


@contextlib.contextmanager
def _run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Serialise up/down on one run dir (e.g. two test workers starting at once)."""
    with (run_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- pure helpers


def pick_free_port(preferred: int | None = None, avoid: Sequence[int] = ()) -> int:
    """`preferred` if nobody listens on it, else a free loopback port from the kernel."""
    if preferred is not None and preferred not in avoid and _port_free(preferred):
        return preferred
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
    raise InfraError("could not find a free loopback port")


def _port_free(port: int) -> bool:
    # SO_REUSEADDR mirrors what Kafka and PostgreSQL do, so TIME_WAIT leftovers don't count.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def new_cluster_id() -> str:
    """A KRaft cluster id, as `kafka-storage random-uuid` makes (saves a JVM start)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that look like CLI flags
            return text


def render_server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    """server.properties for one combined broker+controller node on loopback."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "3",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Without this every new consumer group waits 3 s before its first assignment.
        "group.initial.rebalance.delay.ms": "0",
    }
    lines = ["# Written by civicpulse/infra.py; regenerated on a fresh `infra up`."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"


# --------------------------------------------------------------------------- processes

# Popen objects of brokers started by this process: kept so we can reap them (a
# zombie still answers kill(pid, 0)) and so Python does not warn on collection.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _run(argv: Sequence[str], *, what: str, cwd: Path | None = None) -> str:
    """Run a short command; raise InfraError with its output when it fails."""
    try:
        done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise InfraError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-4000:]
        raise InfraError(f"{what} failed (exit {done.returncode}): {shlex.join(argv)}\n{output}")
    return done.stdout


def _pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _cmdline_contains(pid: int, needle: str) -> bool:
    """Guard against a recycled pid; assume yes where /proc is missing."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return needle.encode() in raw


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            _CHILDREN.pop(pid, None)
            return True
        time.sleep(0.2)
    return False


def _which_or_install(tool: str, apt_package: str, say: Say) -> str:
    found = shutil.which(tool)
    if found:
        return found
    _apt_install(apt_package, say)
    found = shutil.which(tool)
    if not found:
        raise InfraError(f"`{tool}` still not found after installing {apt_package}")
    return found


def _apt_install(package: str, say: Say) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise InfraError(f"{package} is missing; install it (e.g. `apt-get install -y {package}`)")
    say(f"{package} not found: installing it with apt-get (first run only)…")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", package]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise InfraError(f"{shlex.join(argv)} failed:\n{done.stderr.strip()[-3000:]}")


# --------------------------------------------------------------------------- kafka


def kafka_lib_dir(version: str | None = None, *, quiet: bool = False) -> Path:
    """The folder of Kafka jars (broker + kafka-tools), fetched on first use."""
    return _kafka_lib_dir(version or _kafka_version(), _sayer(quiet))


def _kafka_version() -> str:
    return os.environ.get("CIVICPULSE_KAFKA_VERSION", DEFAULT_KAFKA_VERSION)


def _kafka_lib_dir(version: str, say: Say) -> Path:
    lib = cache_dir() / f"kafka-{version}" / "lib"
    if not (lib / f"kafka_2.13-{version}.jar").exists():
        _fetch_kafka_jars(version, lib, say)
    return lib


def kafka_classpath(version: str | None = None) -> str:
    """A `java -cp` value with every Kafka jar, e.g. for ProducerPerformance."""
    return str(kafka_lib_dir(version, quiet=True) / "*")


def _fetch_kafka_jars(version: str, lib: Path, say: Say) -> None:
    mvn = _which_or_install("mvn", "maven", say)
    say(f"fetching Apache Kafka {version} from Maven Central (first run only)…")
    lib.parent.mkdir(parents=True, exist_ok=True)
    # Download beside the final folder and rename, so an interrupted fetch
    # never looks complete.
    staging = Path(tempfile.mkdtemp(prefix="lib.", dir=lib.parent))
    try:
        _run(
            [
                mvn,
                "-q",
                "-B",
                "-Dstyle.color=never",  # plain text in error messages
                "-f",
                str(KAFKA_DEPLOY_DIR / "pom.xml"),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
                f"-Dkafka.version={version}",
            ],
            what=f"fetching Kafka {version} jars",
        )
        try:
            staging.rename(lib)
        except OSError:
            if not lib.exists():  # another process won the race: theirs is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"Kafka {version} jars cached in {lib}")


def _java_opts(node: KafkaNode) -> list[str]:
    return [
        f"-Dlog4j2.configurationFile={KAFKA_DEPLOY_DIR / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={node.log_dir}",
        "-Djava.awt.headless=true",
        "-cp",
        str(node.lib_dir / "*"),
    ]


def _kept_kafka_node(previous: KafkaNode | None) -> KafkaNode | None:
    """The previous node, ready to restart, if its formatted data survived."""
    if previous is None or not (previous.data_dir / "meta.properties").exists():
        return None
    # The KRaft log records the controller endpoint, so kept data keeps its ports.
    for port in (previous.port, previous.controller_port):
        if not _port_free(port):
            raise InfraError(
                f"port {port} of the kept Kafka data in {previous.home} is taken; "
                "run `civicpulse infra down` (without --keep-data) to reset"
            )
    return replace(previous, pid=None)


def _fresh_kafka_node(run_dir: Path, lib: Path, version: str) -> KafkaNode:
    port = pick_free_port(DEFAULT_KAFKA_PORT)
    return KafkaNode(
        version=version,
        port=port,
        controller_port=pick_free_port(avoid=[port]),
        cluster_id=new_cluster_id(),
        lib_dir=lib,
        home=run_dir / "kafka",
    )


def _format_kafka_storage(node: KafkaNode, java: str) -> None:
    shutil.rmtree(node.home, ignore_errors=True)
    node.log_dir.mkdir(parents=True)
    node.properties_file.write_text(
        render_server_properties(node.port, node.controller_port, node.data_dir)
    )
    _run(
        [
            java,
            "-Xmx256m",
            # A one-shot tool: the quick C1 JIT and serial GC cut its start-up by ~40%.
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            *_java_opts(node),
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            node.cluster_id,
            "-c",
            str(node.properties_file),
        ],
        what="formatting Kafka storage",
    )


def _launch_kafka(node: KafkaNode, java: str) -> KafkaNode:
    argv = [java, "-Xmx512m", *_java_opts(node), "kafka.Kafka", str(node.properties_file)]
    with node.stdout_file.open("ab") as out:
        # A new session: the broker outlives `civicpulse infra up` and ignores its Ctrl-C.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=node.home,
        )
    _CHILDREN[proc.pid] = proc
    return replace(node, pid=proc.pid)


def _kafka_answers(port: int, timeout: float = 2.0) -> bool:
    """True if the port speaks Kafka: send ApiVersions v0 and check the reply."""
    correlation_id = 0x43500001
    client_id = b"civicpulse-infra"
    request = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            size = struct.unpack(">i", _recv_exact(sock, 4))[0]
            reply = _recv_exact(sock, size)
    except (OSError, struct.error):
        return False
    got_id, error_code = struct.unpack(">ih", reply[:6])
    # 35 = UNSUPPORTED_VERSION: still a live Kafka answering with its version range.
    return bool(got_id == correlation_id and error_code in (0, 35))


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise OSError("connection closed")
        chunks += chunk
    return bytes(chunks)


def _kafka_log_says_started(node: KafkaNode) -> bool:
    try:
        return KAFKA_READY_MARKER in node.log_file.read_text(errors="replace")
    except FileNotFoundError:
        return False


def _wait_kafka_ready(node: KafkaNode, timeout: float = KAFKA_START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(node.pid):
            raise InfraError(_kafka_failure("Kafka exited during start-up", node))
        if _kafka_log_says_started(node) and _kafka_answers(node.port):
            return
        time.sleep(0.25)
    raise InfraError(_kafka_failure(f"Kafka not ready after {timeout:.0f} s", node))


def _kafka_failure(reason: str, node: KafkaNode) -> str:
    # The console file holds only WARN and above, so the cause is usually there.
    return (
        f"{reason}. Warnings and errors ({node.stdout_file}):\n{_tail(node.stdout_file)}\n"
        f"Last {LOG_TAIL_LINES} lines of {node.log_file}:\n{_tail(node.log_file)}"
    )


def _kafka_process_alive(node: KafkaNode) -> bool:
    return (
        node.pid is not None and _pid_alive(node.pid) and _cmdline_contains(node.pid, "kafka.Kafka")
    )


def _kafka_healthy(node: KafkaNode) -> bool:
    return _kafka_process_alive(node) and _kafka_answers(node.port)


def _start_kafka(run_dir: Path, previous: KafkaNode | None, say: Say) -> tuple[KafkaNode, bool]:
    """Launch the broker unless it runs; return it (maybe not ready yet) and whether we did."""
    if previous is not None and _kafka_process_alive(previous):
        return previous, False
    java = _which_or_install("java", "default-jre-headless", say)
    node = _kept_kafka_node(previous)
    if node is None:
        node = _fresh_kafka_node(run_dir, _kafka_lib_dir(_kafka_version(), say), _kafka_version())
        say(f"formatting Kafka {node.version} storage (KRaft cluster {node.cluster_id})…")
        _format_kafka_storage(node, java)
    else:
        node = replace(node, lib_dir=_kafka_lib_dir(node.version, say))  # cache may have moved
    say(f"starting Kafka {node.version} on {node.bootstrap}…")
    return _launch_kafka(node, java), True


def _stop_kafka(node: KafkaNode, say: Say) -> None:
    if node.pid is None or not _kafka_process_alive(node):
        return
    say(f"stopping Kafka (pid {node.pid})…")
    os.kill(node.pid, signal.SIGTERM)  # controlled shutdown flushes and closes the log
    if not _wait_for_exit(node.pid, KAFKA_STOP_TIMEOUT_S):
        say(f"Kafka did not stop within {KAFKA_STOP_TIMEOUT_S:.0f} s: killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, signal.SIGKILL)
        _wait_for_exit(node.pid, 10.0)


# --------------------------------------------------------------------------- postgres


def _find_pg_bin_dir() -> Path | None:
    """The folder of initdb/pg_ctl: via PATH, else the highest /usr/lib/postgresql/N/bin."""
    initdb = shutil.which("initdb")
    if initdb:
        # Debian puts only wrappers/symlinks in PATH; the real folder has every tool.
        return Path(initdb).resolve().parent
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    candidates.sort(key=lambda p: _version_key(p.parent.name))
    return candidates[-1] if candidates else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _pg_bin_dir(say: Say) -> Path:
    found = _find_pg_bin_dir()
    if found is None:
        _apt_install("postgresql", say)
        found = _find_pg_bin_dir()
    if found is None:
        raise InfraError("PostgreSQL installed but initdb not found under /usr/lib/postgresql")
    return found


def _pg_os_user() -> str | None:
    """PostgreSQL refuses to run as root: pick (or create) a system user for it."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", DB_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    _run(["useradd", "--system", "--no-create-home", DB_USER], what="creating a system user")
    return DB_USER


def _as_user(os_user: str | None, argv: list[str]) -> list[str]:
    return argv if os_user is None else ["runuser", "-u", os_user, "--", *argv]


def _pg_home(run_dir: Path, os_user: str | None) -> Path:
    """run_dir/postgres, or a private /tmp folder when the server's user can't reach
    that (e.g. pytest's 0700 temp dirs) or its socket path would be too long."""
    home = run_dir / "postgres"
    home.mkdir(parents=True, exist_ok=True)
    if os_user is not None:
        shutil.chown(home, os_user, os_user)
    if len(str(home)) <= MAX_SOCKET_DIR_LEN and _user_can_write(os_user, home):
        return home
    with contextlib.suppress(OSError):
        home.rmdir()
    fallback = Path(tempfile.mkdtemp(prefix="civicpulse-pg-"))
    if os_user is not None:
        shutil.chown(fallback, os_user, os_user)
    return fallback


def _user_can_write(os_user: str | None, path: Path) -> bool:
    if os_user is None:
        return os.access(path, os.W_OK | os.X_OK)
    argv = _as_user(os_user, ["test", "-w", str(path), "-a", "-x", str(path)])
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def _new_postgres_node(run_dir: Path, previous: PostgresNode | None, say: Say) -> PostgresNode:
    os_user = _pg_os_user()
    if previous is not None and (previous.data_dir / "PG_VERSION").exists():
        port = pick_free_port(previous.port)  # unlike Kafka, Postgres can change port freely
        return replace(previous, port=port, os_user=os_user, pid=None)
    return PostgresNode(
        port=pick_free_port(DEFAULT_POSTGRES_PORT),
        home=_pg_home(run_dir, os_user),
        bin_dir=_pg_bin_dir(say),
        os_user=os_user,
    )


def _init_postgres(node: PostgresNode) -> None:
    argv = [
        str(node.bin_dir / "initdb"),
        "-D",
        str(node.data_dir),
        "-A",
        "trust",
        "-U",
        DB_USER,
        "--encoding=UTF8",
        "--no-locale",
        "--no-sync",  # a throwaway cluster: skip the fsync of every new file
    ]
    _run(_as_user(node.os_user, argv), what="initdb", cwd=node.home)


def _start_postgres(node: PostgresNode) -> PostgresNode:
    server_opts = (
        f"-p {node.port} -k {shlex.quote(str(node.home))} -c listen_addresses={HOST} "
        "-c fsync=off -c max_connections=200"
    )
    argv = [
        str(node.bin_dir / "pg_ctl"),
        "-D",
        str(node.data_dir),
        "-o",
        server_opts,
        "-l",
        str(node.log_file),
        "-w",
        "-t",
        str(int(POSTGRES_READY_TIMEOUT_S)),
        "start",
    ]
    try:
        _run(_as_user(node.os_user, argv), what="pg_ctl start", cwd=node.home)
    except InfraError as exc:
        raise InfraError(f"{exc}\nLast lines of {node.log_file}:\n{_tail(node.log_file)}") from exc
    _wait_postgres_ready(node)
    return replace(node, pid=_postmaster_pid(node))


def _postmaster_pid(node: PostgresNode) -> int | None:
    try:
        first = (node.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
    except (FileNotFoundError, PermissionError):
        return None
    return int(first) if first.strip().isdigit() else None


def _pg_isready(node: PostgresNode) -> bool:
    argv = [str(node.bin_dir / "pg_isready"), "-q", "-h", HOST, "-p", str(node.port), "-U", DB_USER]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def _wait_postgres_ready(node: PostgresNode, timeout: float = POSTGRES_READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pg_isready(node):
            return
        time.sleep(0.2)
    raise InfraError(
        f"PostgreSQL not ready on {HOST}:{node.port} after {timeout:.0f} s. "
        f"Last lines of {node.log_file}:\n{_tail(node.log_file)}"
    )


def _psql(node: PostgresNode, database: str, sql: str) -> str:
    argv = [
        str(node.bin_dir / "psql"),
        "-X",
        "-q",
        "-t",
        "-A",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        HOST,
        "-p",
        str(node.port),
        "-U",
        DB_USER,
        "-d",
        database,
        "-c",
        sql,
    ]
    return _run(argv, what="psql").strip()


def _ensure_database(node: PostgresNode) -> None:
    exists = _psql(node, "postgres", f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'")
    if exists != "1":
        _psql(node, "postgres", f"CREATE DATABASE {DB_NAME}")


def _postgres_process_alive(node: PostgresNode) -> bool:
    pid = _postmaster_pid(node)
    return pid is not None and _pid_alive(pid) and _cmdline_contains(pid, "postgres")


def _postgres_healthy(node: PostgresNode) -> bool:
    return _postgres_process_alive(node) and _pg_isready(node)


def _ensure_postgres(
    run_dir: Path, previous: PostgresNode | None, say: Say
) -> tuple[PostgresNode, bool]:
    """Return a ready server with the civicpulse database, and whether this call started it."""
    if previous is not None and _postgres_process_alive(previous):
        _wait_postgres_ready(previous)
        return replace(previous, pid=_postmaster_pid(previous)), False
    node = _new_postgres_node(run_dir, previous, say)
    try:
        return _boot_postgres(node, say), True
    except BaseException:
        _discard_postgres(node, run_dir, previous, say)
        raise


def _boot_postgres(node: PostgresNode, say: Say) -> PostgresNode:
    if not (node.data_dir / "PG_VERSION").exists():
        say(f"initialising PostgreSQL data in {node.data_dir}…")
        _init_postgres(node)
    say(f"starting PostgreSQL on {HOST}:{node.port}…")
    node = _start_postgres(node)
    _ensure_database(node)
    return node


def _discard_postgres(
    node: PostgresNode, run_dir: Path, previous: PostgresNode | None, say: Say
) -> None:
    """Undo a failed start: stop the server, and drop a fresh /tmp home that
    no state file points at (one inside run_dir is left for inspection)."""
    with contextlib.suppress(InfraError):  # keep the original error, not this one
        _stop_postgres(node, say)
    fresh = previous is None or previous.home != node.home
    if fresh and not node.home.is_relative_to(run_dir):
        shutil.rmtree(node.home, ignore_errors=True)


def _stop_postgres(node: PostgresNode, say: Say) -> None:
    if not _postgres_process_alive(node):
        return
    say(f"stopping PostgreSQL (pid {_postmaster_pid(node)})…")
    argv = [str(node.bin_dir / "pg_ctl"), "-D", str(node.data_dir), "-m", "fast", "-w", "stop"]
    _run(_as_user(node.os_user, argv), what="pg_ctl stop", cwd=node.home)


# --------------------------------------------------------------------------- public API


def _quiet(_message: str) -> None:
    """A Say that says nothing."""


def _stderr_say(message: str) -> None:
    # Progress goes to stderr so stdout stays clean for `eval "$(civicpulse infra up)"`.
    print(message, file=sys.stderr, flush=True)


def _sayer(quiet: bool) -> Say:
    return _quiet if quiet else _stderr_say


def infra_up(run_dir: Path | None = None, *, quiet: bool = False) -> LocalInfra:
    """Start (or reuse) Kafka and PostgreSQL for `run_dir`; idempotent."""
    say = _sayer(quiet)
    run_dir = _resolve_run_dir(run_dir)
    _prepare_run_dir(run_dir)
    with _run_dir_lock(run_dir):
        previous = load_state(run_dir)
        if (
            previous is not None
            and _kafka_healthy(previous.kafka)
            and _postgres_healthy(previous.postgres)
        ):
            say(f"already running in {run_dir}")
            return previous
        infra = _bring_up(run_dir, previous, say)
        save_state(infra)
        say(f"Kafka {infra.kafka.version} ready at {infra.kafka_bootstrap}")
        say(f"PostgreSQL ready at {infra.database_url}")
        return infra


def _bring_up(run_dir: Path, previous: LocalInfra | None, say: Say) -> LocalInfra:
    kafka, kafka_started = _start_kafka(run_dir, previous.kafka if previous else None, say)
    postgres: PostgresNode | None = None
    postgres_started = False
    try:
        # PostgreSQL starts while the JVM boots: saves a few seconds per `up`.
        postgres, postgres_started = _ensure_postgres(
            run_dir, previous.postgres if previous else None, say
        )
        _wait_kafka_ready(kafka)
    except BaseException:
        # Stop what we started: a test fixture that fails here never gets to call `down`.
        if kafka_started:
            _stop_kafka(kafka, say)
        if postgres is not None and postgres_started:
            _discard_postgres(postgres, run_dir, previous.postgres if previous else None, say)
        raise
    return LocalInfra(run_dir=run_dir, kafka=kafka, postgres=postgres)


def stop_component(name: str, run_dir: Path | None = None, *, quiet: bool = False) -> None:
    """Stop only Kafka or only PostgreSQL, keeping its data and ports.

    For fault tests: `infra_up` on the same run directory starts it again
    where it was, and leaves the other component running.
    """
    say = _sayer(quiet)
    run_dir = _resolve_run_dir(run_dir)
    with _run_dir_lock(run_dir):
        state = load_state(run_dir)
        if state is None:
            raise InfraError(f"nothing runs in {run_dir}")
        if name == "kafka":
            _stop_kafka(state.kafka, say)
        elif name == "postgres":
            _stop_postgres(state.postgres, say)
        else:
            raise InfraError(f"unknown component {name!r}: kafka or postgres")


def infra_down(
    run_dir: Path | None = None, keep_data: bool = False, *, quiet: bool = False
) -> None:
    """Stop Kafka (SIGTERM, SIGKILL after 30 s) and PostgreSQL; delete data unless keep_data."""
    say = _sayer(quiet)
    run_dir = _resolve_run_dir(run_dir)
    if not run_dir.exists():
        say(f"nothing to stop: {run_dir} does not exist")
        return
    with _run_dir_lock(run_dir):
        state = load_state(run_dir)
        if state is None:
            say(f"nothing to stop: no {STATE_FILE} in {run_dir}")
            return
        _stop_kafka(state.kafka, say)
        _stop_postgres(state.postgres, say)
        (run_dir / ENV_FILE).unlink(missing_ok=True)  # its addresses are dead now
        if keep_data:
            stopped = json.dumps(_stopped(state).to_json(), indent=2) + "\n"
            _write_atomic(run_dir / STATE_FILE, stopped)
            say(f"stopped; data kept in {run_dir}")
            return
        _remove_data(state)
    _remove_run_dir(run_dir)
    say(f"stopped; data in {run_dir} removed")


def _stopped(state: LocalInfra) -> LocalInfra:
    return replace(
        state, kafka=replace(state.kafka, pid=None), postgres=replace(state.postgres, pid=None)
    )


def _remove_data(state: LocalInfra) -> None:
    shutil.rmtree(state.kafka.home, ignore_errors=True)
    shutil.rmtree(state.postgres.home, ignore_errors=True)  # may live outside run_dir
    (state.run_dir / STATE_FILE).unlink(missing_ok=True)


def _remove_run_dir(run_dir: Path) -> None:
    (run_dir / ".lock").unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # keep it if someone put other files there
        run_dir.rmdir()


def infra_status(run_dir: Path | None = None) -> list[ComponentStatus]:
    """Kafka and PostgreSQL as running/stopped, with their addresses."""
    state = load_state(_resolve_run_dir(run_dir))
    if state is None:
        return [
            ComponentStatus("kafka", running=False, address=None, pid=None),
            ComponentStatus("postgres", running=False, address=None, pid=None),
        ]
    kafka_up = _kafka_healthy(state.kafka)
    postgres_up = _postgres_healthy(state.postgres)
    return [
        ComponentStatus(
            "kafka", kafka_up, state.kafka_bootstrap, state.kafka.pid if kafka_up else None
        ),
        ComponentStatus(
            "postgres",
            postgres_up,
            state.database_url,
            _postmaster_pid(state.postgres) if postgres_up else None,
        ),
    ]


def running_infra(run_dir: Path | None = None) -> LocalInfra | None:
    """The stack in `run_dir` if both components are healthy, else None."""
    state = load_state(_resolve_run_dir(run_dir))
    if state is None or not (_kafka_healthy(state.kafka) and _postgres_healthy(state.postgres)):
        return None
    return state
