"""Child processes and ports: run a command, follow a pid, find a free loopback port."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from civicpulse.infra.state import HOST, InfraError, Say

LOG_TAIL_LINES = 40

# Popen objects of servers started by this process: kept so we can reap them (a
# zombie still answers kill(pid, 0)) and so Python does not warn on collection.
CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def pick_free_port(preferred: int | None = None, avoid: Sequence[int] = ()) -> int:
    """`preferred` if nobody listens on it, else a free loopback port from the kernel."""
    if preferred is not None and preferred not in avoid and port_free(preferred):
        return preferred
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
    raise InfraError("could not find a free loopback port")


def port_free(port: int) -> bool:
    # SO_REUSEADDR mirrors what Kafka and PostgreSQL do, so TIME_WAIT leftovers don't count.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def run(argv: Sequence[str], *, what: str, cwd: Path | None = None) -> str:
    """Run a short command; raise InfraError with its output when it fails."""
    try:
        done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise InfraError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-4000:]
        raise InfraError(f"{what} failed (exit {done.returncode}): {shlex.join(argv)}\n{output}")
    return done.stdout


def pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    child = CHILDREN.get(pid)
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


def cmdline_contains(pid: int, needle: str) -> bool:
    """Guard against a recycled pid; assume yes where /proc is missing."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return needle.encode() in raw


def wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            CHILDREN.pop(pid, None)
            return True
        time.sleep(0.2)
    return False


def kill_now(pid: int, timeout: float = 10.0) -> None:
    """SIGKILL, as a crashed machine stops a server: nothing is flushed or closed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_for_exit(pid, timeout):
        raise InfraError(f"pid {pid} still runs {timeout:.0f} s after SIGKILL")


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"


def _quiet(_message: str) -> None:
    """A Say that says nothing."""


def _stderr_say(message: str) -> None:
    # Progress goes to stderr so stdout stays clean for `eval "$(civicpulse infra up)"`.
    print(message, file=sys.stderr, flush=True)


def sayer(quiet: bool) -> Say:
    return _quiet if quiet else _stderr_say
