"""Local Kafka + PostgreSQL for development and tests, without Docker.

Kafka runs from Maven Central jars (see deploy/kafka/pom.xml), PostgreSQL from
the machine's own binaries. Everything lives in a run directory, so several
independent stacks (a developer's and a test session's) can run side by side.

Where things are:
- `state`: the nodes of a stack and the run directory's infra.json / infra.env;
- `processes`: commands, pids, SIGKILL, free loopback ports;
- `packages`: Debian packages and Kafka's jars, fetched on first use;
- `kafka`: KRaft nodes (one, or a cluster of N), readiness by a metadata request;
- `postgres`: initdb, pg_ctl, crash-safe restarts;
- `lifecycle`: the public verbs `infra_up`, `infra_down`, `infra_status`,
  `stop_component`, `kill_component`.
"""

from civicpulse.infra.kafka import (
    min_insync_for,
    new_cluster_id,
    render_server_properties,
    replication_for,
)
from civicpulse.infra.lifecycle import (
    infra_down,
    infra_status,
    infra_up,
    kill_component,
    running_infra,
    stop_component,
)
from civicpulse.infra.packages import kafka_classpath, kafka_lib_dir
from civicpulse.infra.postgres import database_url_named, scratch_database
from civicpulse.infra.processes import pick_free_port
from civicpulse.infra.state import (
    DEFAULT_KAFKA_VERSION,
    ComponentStatus,
    InfraError,
    KafkaNode,
    LocalInfra,
    PostgresNode,
    cache_dir,
    default_run_dir,
    load_state,
    render_env_file,
    save_state,
)

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "ComponentStatus",
    "InfraError",
    "KafkaNode",
    "LocalInfra",
    "PostgresNode",
    "cache_dir",
    "database_url_named",
    "default_run_dir",
    "infra_down",
    "infra_status",
    "infra_up",
    "kafka_classpath",
    "kafka_lib_dir",
    "kill_component",
    "load_state",
    "min_insync_for",
    "new_cluster_id",
    "pick_free_port",
    "render_env_file",
    "render_server_properties",
    "replication_for",
    "running_infra",
    "save_state",
    "scratch_database",
    "stop_component",
]
