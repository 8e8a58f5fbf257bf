"""PostgreSQL plumbing: the connection pool and plain-SQL migrations.

Each service keeps numbered `.sql` files in its `migrations/` folder. They run
in name order, each in its own transaction, and are recorded in
`schema_migrations` so a second start applies only what is new. An advisory
lock keeps two replicas starting together from racing.
"""

import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# What handlers get: a plain connection, or one borrowed from the pool.
Connection = asyncpg.Connection | PoolConnectionProxy

log = logging.getLogger(__name__)
MIGRATION_LOCK_ID = 0x6369766963  # "civic": one lock shared by every service
SHARED_MIGRATIONS = Path(__file__).with_name("migrations")


class MigrationError(RuntimeError):
    pass


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    reset: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Pool:
    """`reset`, if given, replaces asyncpg's reset of a released connection (a round trip)."""
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, command_timeout=30, reset=reset
    )
    if pool is None:  # asyncpg's typing allows it; it never happens when awaited
        raise RuntimeError("asyncpg returned no pool")
    return pool


def migration_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.sql"))


async def apply_migrations(pool: asyncpg.Pool, service: str, folder: Path) -> list[str]:
    """Apply the service's new migrations; returns the names applied."""
    applied_now: list[str] = []
    async with pool.acquire() as connection:
        await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
        try:
            # A service's own role may not create tables (deploy/postgres/roles.sql):
            # it only reads what the owner applied.
            if await connection.fetchval("SELECT to_regclass('schema_migrations')") is None:
                await connection.execute(
                    """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    service    text        NOT NULL,
                    name       text        NOT NULL,
                    checksum   text        NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (service, name)
                )
                """
                )
            rows = await connection.fetch(
                "SELECT name, checksum FROM schema_migrations WHERE service = $1", service
            )
            done = {row["name"]: row["checksum"] for row in rows}
            for path in migration_files(folder):
                sql = path.read_text()
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if path.name in done:
                    if done[path.name] != checksum:
                        raise MigrationError(
                            f"{service} migration {path.name} changed after it was applied; "
                            "add a new migration instead of editing an old one"
                        )
                    continue
                async with connection.transaction():
                    await connection.execute(sql)
                    await connection.execute(
                        "INSERT INTO schema_migrations (service, name, checksum)"
                        " VALUES ($1, $2, $3)",
                        service,
                        path.name,
                        checksum,
                    )
                log.info("%s: applied migration %s", service, path.name)
                applied_now.append(path.name)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied_now


async def migrate(pool: asyncpg.Pool, service: str, folder: Path) -> list[str]:
    """Apply the shared tables (outbox, processed events, timers), then the service's own."""
    applied = await apply_migrations(pool, "shared", SHARED_MIGRATIONS)
    return applied + await apply_migrations(pool, service, folder)


async def migrate_as_owner(owner_url: str, service: str, folder: Path) -> list[str]:
    """Migrate with the owner role, then let each service's role reach its new tables.

    `civicpulse_grant_service_tables()` comes from deploy/postgres/roles.sql.
    """
    pool = await create_pool(owner_url, max_size=1)
    try:
        applied = await migrate(pool, service, folder)
        await pool.execute("SELECT civicpulse_grant_service_tables()")
        return applied
    finally:
        await pool.close()
