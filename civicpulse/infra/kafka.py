"""Kafka in KRaft mode from Maven Central jars: one node, or a cluster of N on loopback.

Every node is broker and controller at once. A single node forms its quorum
alone (`--standalone`); a cluster lists every node in `controller.quorum.voters`,
so it keeps a quorum, and its partitions a leader, when one node is lost.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from civicpulse.infra.packages import ensure_kafka_jars, kafka_version, which_or_install
from civicpulse.infra.processes import (
    CHILDREN,
    LOG_TAIL_LINES,
    cmdline_contains,
    kill_now,
    pick_free_port,
    pid_alive,
    port_free,
    run,
    tail,
    wait_for_exit,
)
from civicpulse.infra.state import (
    DEFAULT_KAFKA_PORT,
    HOST,
    KAFKA_DEPLOY_DIR,
    InfraError,
    KafkaNode,
    Say,
)

KAFKA_START_TIMEOUT_S = 90.0
KAFKA_STOP_TIMEOUT_S = 30.0
KAFKA_READY_MARKER = "Kafka Server started"
MAX_REPLICATION = 3
PORT_RELEASE_TIMEOUT_S = 20.0


def new_cluster_id() -> str:
    """A KRaft cluster id, as `kafka-storage random-uuid` makes (saves a JVM start)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that look like CLI flags
            return text


def replication_for(brokers: int) -> int:
    """Replicas of each partition on a cluster of `brokers` nodes (3 at most)."""
    return min(brokers, MAX_REPLICATION)


def min_insync_for(replication: int) -> int:
    """A majority of the replicas: with 3, a write survives the loss of any one broker."""
    return replication // 2 + 1


def render_server_properties(
    port: int,
    controller_port: int,
    data_dir: Path,
    *,
    node_id: int = 1,
    quorum_voters: str | None = None,
    replication: int = 1,
) -> str:
    """server.properties for one broker+controller node on loopback.

    Without `quorum_voters` the node is a cluster of its own; with it, one
    node of the cluster that list names, whose internal topics (offsets,
    transactions) get `replication` replicas and a majority in sync.
    """
    min_isr = str(min_insync_for(replication))
    quorum = (
        {"controller.quorum.voters": quorum_voters}
        if quorum_voters
        else {"controller.quorum.bootstrap.servers": f"{HOST}:{controller_port}"}
    )
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        **quorum,
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "3",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": str(replication),
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": min_isr,
        # Without this every new consumer group waits 3 s before its first assignment.
        "group.initial.rebalance.delay.ms": "0",
    }
    if replication > 1:
        props["default.replication.factor"] = str(replication)
        props["min.insync.replicas"] = min_isr
    lines = ["# Written by civicpulse/infra/kafka.py; regenerated on a fresh `infra up`."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def _java_opts(node: KafkaNode) -> list[str]:
    return [
        f"-Dlog4j2.configurationFile={KAFKA_DEPLOY_DIR / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={node.log_dir}",
        "-Djava.awt.headless=true",
        "-cp",
        str(node.lib_dir / "*"),
    ]


def _kept_nodes(previous: Sequence[KafkaNode]) -> list[KafkaNode] | None:
    """The previous nodes, ready to restart, if their formatted data survived."""
    if not previous or not all((n.data_dir / "meta.properties").exists() for n in previous):
        return None
    kept = []
    for node in previous:
        if kafka_process_alive(node):
            kept.append(node)
            continue
        # The KRaft log records the controller endpoint, so kept data keeps its ports.
        for port in (node.port, node.controller_port):
            if not _port_freed(port):
                raise InfraError(
                    f"port {port} of the kept Kafka data in {node.home} is taken; "
                    "run `civicpulse infra down` (without --keep-data) to reset"
                )
        kept.append(replace(node, pid=None))
    return kept


def _port_freed(port: int, within_seconds: float = PORT_RELEASE_TIMEOUT_S) -> bool:
    """Whether `port` is free, or frees itself soon: the connections of a node that
    was just killed hold its ports until their peers have closed them."""
    deadline = time.monotonic() + within_seconds
    while not port_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def _fresh_nodes(run_dir: Path, lib: Path, version: str, count: int) -> list[KafkaNode]:
    taken: list[int] = []
    for _ in range(count):
        taken.append(pick_free_port(DEFAULT_KAFKA_PORT, avoid=taken))
        taken.append(pick_free_port(avoid=taken))
    cluster_id = new_cluster_id()
    ports = [(taken[2 * n], taken[2 * n + 1]) for n in range(count)]
    voters = (
        ",".join(f"{n + 1}@{HOST}:{controller}" for n, (_, controller) in enumerate(ports))
        if count > 1
        else None
    )
    return [
        KafkaNode(
            version=version,
            port=port,
            controller_port=controller,
            cluster_id=cluster_id,
            lib_dir=lib,
            home=run_dir / ("kafka" if n == 0 else f"kafka-{n + 1}"),
            node_id=n + 1,
            quorum_voters=voters,
        )
        for n, (port, controller) in enumerate(ports)
    ]


def _format_storage(node: KafkaNode, java: str, replication: int) -> None:
    shutil.rmtree(node.home, ignore_errors=True)
    node.log_dir.mkdir(parents=True)
    node.properties_file.write_text(
        render_server_properties(
            node.port,
            node.controller_port,
            node.data_dir,
            node_id=node.node_id,
            quorum_voters=node.quorum_voters,
            replication=replication,
        )
    )
    # A static quorum (voters listed) is formatted as is; a lone node as its own quorum.
    quorum = [] if node.quorum_voters else ["--standalone"]
    run(
        [
            java,
            "-Xmx256m",
            # A one-shot tool: the quick C1 JIT and serial GC cut its start-up by ~40%.
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            *_java_opts(node),
            "kafka.tools.StorageTool",
            "format",
            *quorum,
            "-t",
            node.cluster_id,
            "-c",
            str(node.properties_file),
        ],
        what=f"formatting Kafka storage of node {node.node_id}",
    )


def _launch(node: KafkaNode, java: str) -> KafkaNode:
    heap = "-Xmx512m" if node.quorum_voters is None else "-Xmx384m"
    argv = [java, heap, *_java_opts(node), "kafka.Kafka", str(node.properties_file)]
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
    CHILDREN[proc.pid] = proc
    return replace(node, pid=proc.pid)


def _run_coroutine(coroutine: Coroutine[Any, Any, set[int]]) -> set[int]:
    """Run `coroutine` to completion, also when the caller's thread runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _broker_ids(bootstrap: str, within_seconds: float) -> set[int]:
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        client_id="civicpulse-infra",
        request_timeout_ms=int(within_seconds * 1000),
    )
    try:
        async with asyncio.timeout(within_seconds):
            await client.bootstrap()
        return {broker.nodeId for broker in client.cluster.brokers()}
    finally:
        await client.close()


def brokers_seen(node: KafkaNode, timeout: float = 3.0) -> set[int]:
    """The broker ids in the cluster metadata `node` serves (empty if it does not answer)."""
    # aiokafka logs every refused connection as an error: a probe expects some.
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        return _run_coroutine(_broker_ids(node.bootstrap, timeout))
    except (KafkaError, OSError, TimeoutError):
        return set()
    finally:
        aiokafka_log.setLevel(level)


def _log_says_started(node: KafkaNode) -> bool:
    try:
        return KAFKA_READY_MARKER in node.log_file.read_text(errors="replace")
    except FileNotFoundError:
        return False


def wait_kafka_ready(nodes: Sequence[KafkaNode], timeout: float = KAFKA_START_TIMEOUT_S) -> None:
    """Wait until every node has started and serves metadata naming every node."""
    expected = {node.node_id for node in nodes}
    deadline = time.monotonic() + timeout
    waiting = list(nodes)
    while waiting and time.monotonic() < deadline:
        node = waiting[0]
        if not pid_alive(node.pid):
            raise InfraError(_failure(f"Kafka node {node.node_id} exited during start-up", node))
        if _log_says_started(node) and brokers_seen(node) >= expected:
            waiting.pop(0)
            continue
        time.sleep(0.25)
    if waiting:
        raise InfraError(_failure(f"Kafka not ready after {timeout:.0f} s", waiting[0]))


def _failure(reason: str, node: KafkaNode) -> str:
    # The console file holds only WARN and above, so the cause is usually there.
    return (
        f"{reason}. Warnings and errors ({node.stdout_file}):\n{tail(node.stdout_file)}\n"
        f"Last {LOG_TAIL_LINES} lines of {node.log_file}:\n{tail(node.log_file)}"
    )


def kafka_process_alive(node: KafkaNode) -> bool:
    if node.pid is None:
        return False
    return pid_alive(node.pid) and cmdline_contains(node.pid, "kafka.Kafka")


def kafka_healthy(node: KafkaNode) -> bool:
    return kafka_process_alive(node) and node.node_id in brokers_seen(node)


def start_kafka(
    run_dir: Path, previous: Sequence[KafkaNode], brokers: int, say: Say
) -> tuple[list[KafkaNode], list[KafkaNode]]:
    """Launch the nodes that do not run; return all nodes (maybe not ready yet) and those
    this call launched."""
    if previous and all(kafka_process_alive(node) for node in previous):
        return list(previous), []
    java = which_or_install("java", "default-jre-headless", say)
    version = previous[0].version if previous else kafka_version()
    lib = ensure_kafka_jars(version, say)  # the cache may have moved
    nodes = _kept_nodes(previous)
    if nodes is None:
        nodes = _fresh_nodes(run_dir, lib, version, brokers)
        say(f"formatting Kafka {version} storage (KRaft cluster {nodes[0].cluster_id})…")
        for node in nodes:
            _format_storage(node, java, replication_for(len(nodes)))
    launched = []
    for index, node in enumerate(nodes):
        if kafka_process_alive(node):
            continue
        say(f"starting Kafka {version} node {node.node_id} on {node.bootstrap}…")
        nodes[index] = _launch(replace(node, lib_dir=lib), java)
        launched.append(nodes[index])
    return nodes, launched


def kill_kafka(nodes: Sequence[KafkaNode], say: Say) -> None:
    """SIGKILL, as a crash would: no controlled shutdown, the log recovers at the next start."""
    for node in nodes:
        if node.pid is not None and kafka_process_alive(node):
            say(f"killing Kafka node {node.node_id} (pid {node.pid})…")
            kill_now(node.pid)


def stop_kafka(nodes: Sequence[KafkaNode], say: Say) -> None:
    """SIGTERM every node at once (a cluster's controlled shutdown needs its quorum
    until the end), SIGKILL those still running after 30 s."""
    running = [node for node in nodes if node.pid is not None and kafka_process_alive(node)]
    for node in running:
        assert node.pid is not None
        say(f"stopping Kafka node {node.node_id} (pid {node.pid})…")
        os.kill(node.pid, signal.SIGTERM)  # controlled shutdown flushes and closes the log
    deadline = time.monotonic() + KAFKA_STOP_TIMEOUT_S
    for node in running:
        assert node.pid is not None
        if not wait_for_exit(node.pid, max(deadline - time.monotonic(), 0.0)):
            say(f"Kafka did not stop within {KAFKA_STOP_TIMEOUT_S:.0f} s: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGKILL)
            wait_for_exit(node.pid, 10.0)
