"""PostgreSQL for `civicpulse infra up --secure`: TLS, and the roles of roles.sql.

The server is the plain launcher's; this turns `ssl` on with the generated
certificate (a reload, no restart), runs the roles script, sets the login
roles' passwords and lets those roles in over TLS with SCRAM only.
"""

import asyncio
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROLES_SQL = Path(__file__).resolve().parents[1] / "deploy" / "postgres" / "roles.sql"
DATABASE_ROLES = (
    "civicpulse_owner",
    "civicpulse_intake",
    "civicpulse_complaints",
    "civicpulse_feedback",
    "civicpulse_metrics",
)

# The PostgreSQL role each Kafka principal's process connects as.
DATABASE_ROLE_OF = {
    "civicpulse-intake": "civicpulse_intake",
    "civicpulse-complaints": "civicpulse_complaints",
    "civicpulse-feedback": "civicpulse_feedback",
    "civicpulse-feedback-sender": "civicpulse_feedback",
    "civicpulse-metrics": "civicpulse_metrics",
}


class PostgresTlsError(RuntimeError):
    pass


async def enable_postgres_tls(
    database_url: str, home: Path, os_user: str | None, tls: Path
) -> None:
    """Turn on ssl in the running PostgreSQL with the generated certificate (a reload)."""
    target = home / "tls"
    target.mkdir(exist_ok=True)
    for name in ("postgres.crt", "postgres.key", "ca.crt"):
        shutil.copy(tls / name, target / name)
        if os_user is not None:
            shutil.chown(target / name, os_user, os_user)
    (target / "postgres.key").chmod(0o600)
    if os_user is not None:
        shutil.chown(target, os_user, os_user)
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(f"ALTER SYSTEM SET ssl_cert_file = '{target / 'postgres.crt'}'")
        await connection.execute(f"ALTER SYSTEM SET ssl_key_file = '{target / 'postgres.key'}'")
        await connection.execute("ALTER SYSTEM SET ssl = on")
        await connection.execute("SELECT pg_reload_conf()")
        for _ in range(50):
            if await connection.fetchval("SHOW ssl") == "on":
                return
            await asyncio.sleep(0.1)
        raise PostgresTlsError("PostgreSQL did not turn ssl on; see its log")
    finally:
        await connection.close()


def tls_database_url(plain_url: str, ca_file: Path) -> str:
    return f"{plain_url}?sslmode=verify-full&sslrootcert={ca_file}"


def role_database_url(plain_url: str, role: str, password: str, ca_file: Path) -> str:
    parts = urlsplit(plain_url)
    netloc = f"{role}:{password}@{parts.hostname}:{parts.port}"
    return tls_database_url(urlunsplit(parts._replace(netloc=netloc)), ca_file)


async def create_database_roles(
    database_url: str, data_dir: Path, passwords: dict[str, str]
) -> None:
    """Run deploy/postgres/roles.sql, set the login roles' passwords, require TLS for them.

    The launcher's own superuser keeps its trusted local login; the CivicPulse
    roles may log in only over TLS with their SCRAM password.
    """
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(ROLES_SQL.read_text())
        for role, password in passwords.items():
            # ALTER ROLE takes no parameters: the password is quoted as a literal.
            literal = await connection.fetchval("SELECT quote_literal($1)", password)
            await connection.execute(f"ALTER ROLE {role} PASSWORD {literal}")
        hba = data_dir / "pg_hba.conf"
        rules = (
            "# civicpulse secure_infra: the service roles over TLS with SCRAM only\n"
            "hostssl all civicpulse_owner,+civicpulse_services all scram-sha-256\n"
            "host all civicpulse_owner,+civicpulse_services all reject\n"
        )
        text = hba.read_text()
        if rules not in text:
            stat = hba.stat()
            hba.write_text(rules + text)
            os.chown(hba, stat.st_uid, stat.st_gid)
        await connection.execute("SELECT pg_reload_conf()")
    finally:
        await connection.close()
