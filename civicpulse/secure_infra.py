"""`civicpulse infra up --secure`: the local broker as production runs it.

Next to the plain launcher's stack, a second single-node Kafka runs with a
SASL_SSL listener only for clients, and the launcher's PostgreSQL gets TLS and
the CivicPulse roles (`civicpulse.secure_postgres`):

- a CA and certificates for the broker and PostgreSQL, made with openssl
  (`civicpulse.certificates`);
- SCRAM-SHA-512 users created at format time (`kafka-storage format -S`);
- `StandardAuthorizer`, no access without an ACL, one principal per service
  with least-privilege ACLs (`civicpulse.kafka_acls`), created with the admin
  principal; the broker's own traffic (inter-broker, controller) is mutual TLS
  with its certificate.

The plain launcher (`civicpulse.infra`) is used through its public entry
points only: `infra_up`, `kafka_lib_dir`, `pick_free_port`, `new_cluster_id`,
`render_server_properties`, `KAFKA_DEPLOY_DIR`, `LocalInfra`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest

from civicpulse import infra
from civicpulse.certificates import make_certificates
from civicpulse.infra.state import KAFKA_DEPLOY_DIR
from civicpulse.kafka_acls import (
    ADMIN,
    PERMISSION_ALLOW,
    PRINCIPALS,
    SUPER_USERS,
    Acl,
    all_acls,
)
from civicpulse.secure_postgres import (
    DATABASE_ROLE_OF,
    DATABASE_ROLES,
    create_database_roles,
    enable_postgres_tls,
    role_database_url,
    tls_database_url,
)
from shared.kafka import KafkaConnection, ensure_topics, kafka_client_options
from shared.topics import ALL_TOPICS

HOST = "127.0.0.1"
SECURE_DIR = "secure"
STATE_FILE = "secure.json"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


class SecureInfraError(RuntimeError):
    pass


@dataclass(frozen=True)
class SecureInfra:
    """What clients of the secure stack need: addresses, CA and credentials."""

    run_dir: Path
    bootstrap: str  # SASL_SSL
    internal_port: int  # mutual TLS, the broker's own
    controller_port: int
    pid: int | None
    ca_file: Path
    passwords: dict[str, str]  # principal -> password; the state file is 0600
    database_url: str  # the plain launcher's superuser DSN, over TLS
    database_roles: dict[str, str]  # PostgreSQL role -> DSN over TLS with its password

    @property
    def home(self) -> Path:
        return self.run_dir / SECURE_DIR

    def connection(self, principal: str) -> KafkaConnection:
        return KafkaConnection(
            self.bootstrap,
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            username=principal,
            password=self.passwords[principal],
            ca_file=self.ca_file,
        )

    def kafka_env(self, principal: str) -> dict[str, str]:
        """The Kafka settings a process running as `principal` needs."""
        return {
            "CIVICPULSE_KAFKA_BOOTSTRAP": self.bootstrap,
            "CIVICPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CIVICPULSE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CIVICPULSE_KAFKA_SASL_USERNAME": principal,
            "CIVICPULSE_KAFKA_SASL_PASSWORD_FILE": str(self.password_file(principal)),
            "CIVICPULSE_KAFKA_SSL_CA_FILE": str(self.ca_file),
            "CIVICPULSE_CREATE_TOPICS": "false",  # the admin principal made them
        }

    def password_file(self, principal: str) -> Path:
        return self.home / "passwords" / principal

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {
            key: str(value) if isinstance(value, Path) else value for key, value in data.items()
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SecureInfra:
        return cls(
            run_dir=Path(data["run_dir"]),
            bootstrap=data["bootstrap"],
            internal_port=int(data["internal_port"]),
            controller_port=int(data["controller_port"]),
            pid=data["pid"],
            ca_file=Path(data["ca_file"]),
            passwords=dict(data["passwords"]),
            database_url=data["database_url"],
            database_roles=dict(data["database_roles"]),
        )


# --------------------------------------------------------------------------- broker


def render_secure_properties(
    port: int, internal_port: int, controller_port: int, data_dir: Path, tls: Path
) -> str:
    base = infra.render_server_properties(internal_port, controller_port, data_dir)
    props = dict(
        line.split("=", 1) for line in base.splitlines() if line and not line.startswith("#")
    )
    props |= {
        "listeners": f"SASL_SSL://{HOST}:{port},INTERNAL://{HOST}:{internal_port},"
        f"CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"SASL_SSL://{HOST}:{port},INTERNAL://{HOST}:{internal_port},"
        f"CONTROLLER://{HOST}:{controller_port}",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL",
        "inter.broker.listener.name": "INTERNAL",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls / "broker.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls / "ca.crt"),
        "listener.name.internal.ssl.client.auth": "required",
        "listener.name.controller.ssl.client.auth": "required",
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": ";".join(f"User:{name}" for name in SUPER_USERS),
        "allow.everyone.if.no.acl.found": "false",
    }
    lines = ["# Written by civicpulse/secure_infra.py for `civicpulse infra up --secure`."]
    return "\n".join([*lines, *(f"{key}={value}" for key, value in props.items())]) + "\n"


def _java_argv(java: str, lib: Path, home: Path, *tail: str) -> list[str]:
    return [
        java,
        f"-Dlog4j2.configurationFile={KAFKA_DEPLOY_DIR / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={home / 'logs'}",
        "-Djava.awt.headless=true",
        "-cp",
        str(lib / "*"),
        *tail,
    ]


def _format(java: str, lib: Path, home: Path, passwords: dict[str, str]) -> None:
    scram = [
        arg
        for name, password in passwords.items()
        for arg in ("-S", f"SCRAM-SHA-512=[name={name},password={password}]")
    ]
    argv = _java_argv(
        java,
        lib,
        home,
        *("kafka.tools.StorageTool", "format", "--standalone", "-t", infra.new_cluster_id()),
        *("-c", str(home / "server.properties"), *scram),
    )
    argv[1:1] = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SecureInfraError(f"formatting the secure Kafka failed: {done.stderr[-2000:]}")


def _tls_answers(port: int, ca_file: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with (
            socket.create_connection((HOST, port), timeout=2) as sock,
            context.wrap_socket(sock, server_hostname=HOST),
        ):
            return True
    except OSError:
        return False


def _wait_ready(pid: int, home: Path, port: int, ca_file: Path) -> None:
    log = home / "logs" / "server.log"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not alive(pid):
            raise SecureInfraError(f"secure Kafka exited during start-up; see {home}/kafka.out")
        started = log.exists() and "Kafka Server started" in log.read_text(errors="replace")
        if started and _tls_answers(port, ca_file):
            return
        time.sleep(0.25)
    raise SecureInfraError(f"secure Kafka not ready after {START_TIMEOUT_S:.0f} s; see {log}")


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


async def create_acls(connection: KafkaConnection, entries: list[Acl]) -> None:
    """Create ALLOW entries with the admin principal (CreateAcls, one request each).

    aiokafka's admin client has no create_acls method; its protocol module
    does have the CreateAcls request, sent here through the admin client.
    """
    admin = AIOKafkaAdminClient(**kafka_client_options(connection), client_id="civicpulse-acls")
    await admin.start()
    try:
        for entry in entries:
            request = CreateAclsRequest(
                entry.resource_type,
                entry.resource_name,
                entry.pattern_type,
                entry.kafka_principal,
                "*",
                entry.operation,
                PERMISSION_ALLOW,
            )
            response = await admin._send_request(request)
            for error_code, message in response.creation_responses:
                if error_code:
                    raise SecureInfraError(f"creating ACL {entry} failed: {error_code} {message}")
    finally:
        await admin.close()


# --------------------------------------------------------------------------- up / down


def load(run_dir: Path) -> SecureInfra | None:
    path = run_dir / SECURE_DIR / STATE_FILE
    try:
        return SecureInfra.from_json(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, KeyError):
        return None  # none, or one this launcher cannot read: start afresh


def secure_up(run_dir: Path) -> SecureInfra:
    """Start (or reuse) the SASL_SSL broker and PostgreSQL with TLS in `run_dir`.

    The plain launcher's stack runs too (its PostgreSQL is the one given TLS);
    the secure broker's JVM boots while it starts.
    """
    run_dir = run_dir.resolve()
    previous = load(run_dir)
    if previous is not None and alive(previous.pid):
        infra.infra_up(run_dir)
        return previous
    home = run_dir / SECURE_DIR
    shutil.rmtree(home, ignore_errors=True)
    (home / "logs").mkdir(parents=True)
    (home / "passwords").mkdir(mode=0o700)
    passwords = {name: secrets.token_urlsafe(24) for name in (ADMIN, *(p.name for p in PRINCIPALS))}
    for name, password in passwords.items():
        (home / "passwords" / name).write_text(password)
        (home / "passwords" / name).chmod(0o600)
    make_certificates(home / "tls")
    port, internal_port, controller_port = _three_free_ports()
    (home / "server.properties").write_text(
        render_secure_properties(port, internal_port, controller_port, home / "data", home / "tls")
    )
    pid = _format_and_launch(home, passwords)
    try:
        plain = infra.infra_up(run_dir)
        role_passwords = {role: secrets.token_urlsafe(24) for role in DATABASE_ROLES}
        ca_file = home / "tls" / "ca.crt"
        secure = SecureInfra(
            run_dir=run_dir,
            bootstrap=f"{HOST}:{port}",
            internal_port=internal_port,
            controller_port=controller_port,
            pid=pid,
            ca_file=ca_file,
            passwords=passwords,
            database_url=tls_database_url(plain.database_url, ca_file),
            database_roles={
                role: role_database_url(plain.database_url, role, password, ca_file)
                for role, password in role_passwords.items()
            },
        )
        state = home / STATE_FILE
        state.write_text(json.dumps(secure.to_json(), indent=2) + "\n")
        state.chmod(0o600)
        _wait_ready(pid, home, port, ca_file)
        asyncio.run(_provision(secure, plain, role_passwords))
    except BaseException:
        _stop(pid)
        raise
    return secure


def _three_free_ports() -> tuple[int, int, int]:
    port = infra.pick_free_port()
    internal_port = infra.pick_free_port(avoid=[port])
    return port, internal_port, infra.pick_free_port(avoid=[port, internal_port])


def _format_and_launch(home: Path, passwords: dict[str, str]) -> int:
    java = shutil.which("java")
    if java is None:
        raise SecureInfraError("java is not installed (`civicpulse infra up` installs it)")
    lib = infra.kafka_lib_dir(quiet=True)
    _format(java, lib, home, passwords)
    with (home / "kafka.out").open("ab") as out:
        # A new session: the broker outlives `civicpulse infra up` and ignores its Ctrl-C.
        process = subprocess.Popen(
            _java_argv(java, lib, home, "-Xmx512m", "kafka.Kafka", str(home / "server.properties")),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=home,
        )
    return process.pid


async def _provision(
    secure: SecureInfra, plain: infra.LocalInfra, role_passwords: dict[str, str]
) -> None:
    admin = secure.connection(ADMIN)
    await ensure_topics(admin, ALL_TOPICS)
    await create_acls(admin, all_acls())
    await enable_postgres_tls(
        plain.database_url, plain.postgres.home, plain.postgres.os_user, secure.home / "tls"
    )
    await create_database_roles(plain.database_url, plain.postgres.data_dir, role_passwords)


def secure_down(run_dir: Path) -> None:
    """Stop the secure broker and forget it (PostgreSQL is the plain launcher's)."""
    home = run_dir.resolve() / SECURE_DIR
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        # The raw pid: a state file from an older launcher may not parse whole.
        _stop(json.loads((home / STATE_FILE).read_text())["pid"])
    shutil.rmtree(home, ignore_errors=True)


def _stop(pid: int | None) -> None:
    if pid is None or not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)  # controlled shutdown
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def settings_lines(secure: SecureInfra) -> list[str]:
    """The settings each process needs, as shell lines grouped by principal."""
    owner = secure.database_roles["civicpulse_owner"]
    lines = [
        "# PostgreSQL over TLS (sslmode=verify-full); migrations run as the owner role:",
        f"CIVICPULSE_MIGRATION_DATABASE_URL='{owner}'",
    ]
    for who in PRINCIPALS:
        lines.append(f"# {who.role} (Kafka principal {who.name}):")
        env = secure.kafka_env(who.name)
        role = DATABASE_ROLE_OF.get(who.name)
        if role:
            env["CIVICPULSE_DATABASE_URL"] = secure.database_roles[role]
        lines.append("  " + " ".join(f"{key}='{value}'" for key, value in env.items()))
    return lines
