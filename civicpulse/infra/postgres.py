"""PostgreSQL from the machine's own binaries: a throwaway cluster in the run directory.

PostgreSQL refuses to run as root, so when we are root the server runs as a
system user (`postgres`, else one we create) through `runuser`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from civicpulse.infra.packages import pg_bin_dir
from civicpulse.infra.processes import (
    cmdline_contains,
    kill_now,
    pick_free_port,
    pid_alive,
    run,
    tail,
)
from civicpulse.infra.state import (
    DB_NAME,
    DB_USER,
    DEFAULT_POSTGRES_PORT,
    HOST,
    InfraError,
    PostgresNode,
    Say,
)

POSTGRES_READY_TIMEOUT_S = 60.0
# Unix socket paths are limited to 107 bytes; keep a margin for ".s.PGSQL.<port>".
MAX_SOCKET_DIR_LEN = 90
START_ATTEMPTS = 20


def _pg_os_user() -> str | None:
    """PostgreSQL refuses to run as root: pick (or create) a system user for it."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", DB_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    run(["useradd", "--system", "--no-create-home", DB_USER], what="creating a system user")
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
        bin_dir=pg_bin_dir(say),
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
    run(_as_user(node.os_user, argv), what="initdb", cwd=node.home)


# Autovacuum visits each database every 5 s rather than every minute. A new
# database's tables have no statistics until its first visit, and the statements
# the services prepared meanwhile keep the plans made without them: the metrics
# re-contact UPDATE and the timers' upsert then read every row of their generation
# or service per batch (`bench/README.md`, "A new database's first minute").
# Every test, benchmark and development stack starts on new databases.
AUTOVACUUM_NAPTIME = "5s"
# Loaded when the contrib module is installed, so `pg_stat_statements` can be
# created to see which statements take the time (`bench/README.md`).
STATEMENT_STATISTICS = "pg_stat_statements"


def _server_options(node: PostgresNode) -> str:
    options = (
        f"-p {node.port} -k {shlex.quote(str(node.home))} -c listen_addresses={HOST} "
        f"-c fsync=off -c max_connections=200 -c autovacuum_naptime={AUTOVACUUM_NAPTIME}"
    )
    if (_pkglib_dir(node) / f"{STATEMENT_STATISTICS}.so").exists():
        options += f" -c shared_preload_libraries={STATEMENT_STATISTICS}"
    return options


def _pkglib_dir(node: PostgresNode) -> Path:
    """The server's module directory (Debian: /usr/lib/postgresql/<major>/lib)."""
    pg_config = node.bin_dir / "pg_config"
    if not pg_config.exists():
        return node.bin_dir.parent / "lib"
    found = subprocess.run(
        [str(pg_config), "--pkglibdir"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode == 0 and found.stdout.strip():
        return Path(found.stdout.strip())
    return node.bin_dir.parent / "lib"


def _start_postgres(node: PostgresNode) -> PostgresNode:
    server_opts = _server_options(node)
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
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            run(_as_user(node.os_user, argv), what="pg_ctl start", cwd=node.home)
            break
        except InfraError as exc:
            # After a crash (SIGKILL of the postmaster) its orphaned backends hold the
            # shared memory until they notice and exit, and the dead postmaster's pid
            # exists until it is reaped: the next start waits for both.
            if attempt < START_ATTEMPTS and _left_by_a_crash(tail(node.log_file, 5)):
                time.sleep(1.0)
                continue
            log = tail(node.log_file)
            raise InfraError(f"{exc}\nLast lines of {node.log_file}:\n{log}") from exc
    wait_postgres_ready(node)
    return replace(node, pid=postmaster_pid(node))


def _left_by_a_crash(log_tail: str) -> bool:
    return "still in use" in log_tail or 'lock file "postmaster.pid" already exists' in log_tail


def postmaster_pid(node: PostgresNode) -> int | None:
    try:
        first = (node.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
    except (FileNotFoundError, PermissionError):
        return None
    return int(first) if first.strip().isdigit() else None


def _pg_isready(node: PostgresNode) -> bool:
    argv = [str(node.bin_dir / "pg_isready"), "-q", "-h", HOST, "-p", str(node.port), "-U", DB_USER]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def wait_postgres_ready(node: PostgresNode, timeout: float = POSTGRES_READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pg_isready(node):
            return
        time.sleep(0.2)
    raise InfraError(
        f"PostgreSQL not ready on {HOST}:{node.port} after {timeout:.0f} s. "
        f"Last lines of {node.log_file}:\n{tail(node.log_file)}"
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
    return run(argv, what="psql").strip()


def _ensure_database(node: PostgresNode) -> None:
    exists = _psql(node, "postgres", f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'")
    if exists != "1":
        _psql(node, "postgres", f"CREATE DATABASE {DB_NAME}")


def postgres_process_alive(node: PostgresNode) -> bool:
    pid = postmaster_pid(node)
    return pid is not None and pid_alive(pid) and cmdline_contains(pid, "postgres")


def postgres_healthy(node: PostgresNode) -> bool:
    return postgres_process_alive(node) and _pg_isready(node)


def ensure_postgres(
    run_dir: Path, previous: PostgresNode | None, say: Say
) -> tuple[PostgresNode, bool]:
    """Return a ready server with the civicpulse database, and whether this call started it."""
    if previous is not None and postgres_process_alive(previous):
        wait_postgres_ready(previous)
        return replace(previous, pid=postmaster_pid(previous)), False
    node = _new_postgres_node(run_dir, previous, say)
    try:
        return _boot_postgres(node, say), True
    except BaseException:
        discard_postgres(node, run_dir, previous, say)
        raise


def _boot_postgres(node: PostgresNode, say: Say) -> PostgresNode:
    if not (node.data_dir / "PG_VERSION").exists():
        say(f"initialising PostgreSQL data in {node.data_dir}…")
        _init_postgres(node)
    say(f"starting PostgreSQL on {HOST}:{node.port}…")
    node = _start_postgres(node)
    _ensure_database(node)
    return node


def discard_postgres(
    node: PostgresNode, run_dir: Path, previous: PostgresNode | None, say: Say
) -> None:
    """Undo a failed start: stop the server, and drop a fresh /tmp home that
    no state file points at (one inside run_dir is left for inspection)."""
    with contextlib.suppress(InfraError):  # keep the original error, not this one
        stop_postgres(node, say)
    fresh = previous is None or previous.home != node.home
    if fresh and not node.home.is_relative_to(run_dir):
        shutil.rmtree(node.home, ignore_errors=True)


def kill_postgres(node: PostgresNode, say: Say) -> None:
    """SIGKILL of the postmaster: the next start runs crash recovery from the WAL."""
    pid = postmaster_pid(node)
    if pid is None or not postgres_process_alive(node):
        return
    say(f"killing PostgreSQL's postmaster (pid {pid})…")
    kill_now(pid)


def stop_postgres(node: PostgresNode, say: Say) -> None:
    if not postgres_process_alive(node):
        return
    say(f"stopping PostgreSQL (pid {postmaster_pid(node)})…")
    argv = [str(node.bin_dir / "pg_ctl"), "-D", str(node.data_dir), "-m", "fast", "-w", "stop"]
    run(_as_user(node.os_user, argv), what="pg_ctl stop", cwd=node.home)


def database_url_named(url: str, name: str) -> str:
    """`url` with its database replaced by `name` (same server, user and options)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def scratch_database(url: str, name: str) -> AsyncIterator[str]:
    """A fresh, empty database `name` beside `url`'s, for tests and benchmarks; its URL.

    Dropped on exit, with any connections still open to it.
    """
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield database_url_named(url, name)
    finally:
        admin = await asyncpg.connect(url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
