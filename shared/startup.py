"""What every service does before it consumes: connect, migrate, make its topics exist."""

from pathlib import Path

import asyncpg

from shared.kafka import ensure_topics
from shared.postgres import create_pool, migrate, migrate_as_owner
from shared.settings import ServiceSettings
from shared.topics import ALL_TOPICS


async def prepare(settings: ServiceSettings, service: str, migrations: Path) -> asyncpg.Pool:
    """A pool on a migrated database, with every topic created unless ops own them."""
    if settings.migration_database_url:
        await migrate_as_owner(settings.migration_database_url, service, migrations)
    pool = await create_pool(settings.database_url)
    try:
        # With an owner this only checks that nothing is left to apply.
        await migrate(pool, service, migrations)
        if settings.create_topics:
            await ensure_topics(
                settings.kafka,
                ALL_TOPICS,
                replication_factor=settings.topic_replication_factor,
            )
    except BaseException:
        await pool.close()
        raise
    return pool
