"""Run a service as its own process, the way operators do (used by `civicpulse dev` and tests)."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]


class ServiceProcess:
    """`python -m services.<name>` with the given environment, output to a log file."""

    def __init__(self, module: str, env: Mapping[str, str], log_path: Path) -> None:
        self.module = module
        self.port = int(env["CIVICPULSE_HTTP_PORT"])
        self.log_path = log_path
        self.env = dict(env)  # what this process was given, beside the inherited environment
        self._env = {**os.environ, **env}
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def resident_memory_bytes(self) -> int | None:
        """The process's resident set size (Linux), for benchmarks."""
        if self.pid is None:
            return None
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=REPO_ROOT,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, within_seconds: float = 60.0) -> None:
        deadline = time.monotonic() + within_seconds
        # One client for the whole wait: a client per poll costs a connection pool and
        # TLS context each time, which showed in the benchmarks' CPU figures.
        with httpx.Client(base_url=self.base_url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(f"{self.module} exited early:\n{self.log_tail()}")
                try:
                    # Healthy only if the answer is ours: a port picked free can be taken by
                    # another process before this one binds it (uvicorn binds after start-up).
                    healthy = client.get("/healthz").status_code == 200
                    if healthy and self.listens_on_its_port() is not False:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        raise TimeoutError(f"{self.module} not healthy in {within_seconds}s:\n{self.log_tail()}")

    def listens_on_its_port(self) -> bool | None:
        """Whether this process holds the listening socket of its port (None: no /proc)."""
        if self.pid is None:
            return False
        inodes = listening_socket_inodes(self.port)
        if inodes is None:
            return None
        try:
            fds = list(Path(f"/proc/{self.pid}/fd").iterdir())
        except OSError:
            return None
        for fd in fds:
            try:
                if str(fd.readlink()) in inodes:
                    return True
            except OSError:
                continue
        return False

    def terminate(self, within_seconds: float = 45.0) -> int:
        """SIGTERM, as an orchestrator stops a container; returns the exit code."""
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        return self._process.wait(timeout=within_seconds)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not stopped in time."""
        if self._process is None or self._process.poll() is not None:
            return
        try:
            self.terminate()
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def listening_socket_inodes(port: int) -> set[str] | None:
    """`socket:[inode]` of every socket listening on `port` (Linux /proc; None elsewhere)."""
    inodes: set[str] = set()
    found_table = False
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        found_table = True
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{inode}]")
    return inodes if found_table else None
