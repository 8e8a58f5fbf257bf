"""Every Kafka client's batching, compression and fetch sizes come from one place."""

import gc
from pathlib import Path
from typing import Any

import pytest
from aiokafka import codec

from services.intake.settings import IntakeSettings
from shared.consumer import ConsumerSettings
from shared.kafka import (
    ClientTuning,
    batch_consumer_options,
    consumer_options,
    make_broker,
    producer_options,
)
from shared.operational import YOUNG_GENERATION_THRESHOLD, tune_garbage_collector
from shared.topics import ALL_TOPICS, MAX_MESSAGE_BYTES


def test_a_producer_batch_fits_every_topic_however_it_compresses() -> None:
    """aiokafka caps a batch by its uncompressed size, and compression never grows
    JSON: a batch under max_batch_size is under every topic's max.message.bytes."""
    options = ClientTuning(batch_bytes=4 * MAX_MESSAGE_BYTES).producer_options()

    assert options["max_batch_size"] <= MAX_MESSAGE_BYTES
    assert options["max_request_size"] == MAX_MESSAGE_BYTES
    assert all(topic.max_message_bytes >= MAX_MESSAGE_BYTES for topic in ALL_TOPICS)


def test_producers_stay_idempotent_whatever_the_tuning() -> None:
    for tuning in [ClientTuning(), ClientTuning(linger_ms=0, compression="none")]:
        assert tuning.producer_options()["enable_idempotence"] is True


def test_no_compression_is_aiokafkas_none() -> None:
    assert ClientTuning(compression="none").producer_options()["compression_type"] is None
    assert ClientTuning(compression="lz4").producer_options()["compression_type"] == "lz4"


def test_the_default_compression_has_its_codec_installed() -> None:
    """lz4 and zstd need cramjam (pyproject's aiokafka[lz4]); without it a producer fails."""
    available = {"none": True, "gzip": codec.has_gzip(), "lz4": codec.has_lz4()}
    available["zstd"] = codec.has_zstd()

    assert available[ClientTuning().compression]


def test_the_docs_name_the_default_compression() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    default = ClientTuning().compression

    production = (docs / "production.md").read_text()
    configuration = (docs / "configuration.md").read_text()

    assert f"| `compression_type` (`CIVICPULSE_KAFKA_COMPRESSION`) | {default} |" in production
    assert f"| `CIVICPULSE_KAFKA_COMPRESSION` | `{default}` |" in configuration


def test_the_settings_reach_every_producer_and_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICPULSE_KAFKA_LINGER_MS", "0")
    monkeypatch.setenv("CIVICPULSE_KAFKA_BATCH_BYTES", "65536")
    monkeypatch.setenv("CIVICPULSE_KAFKA_COMPRESSION", "zstd")
    settings = IntakeSettings()

    produced = producer_options(settings.kafka)
    fetched = consumer_options(settings.kafka)
    subscribed = batch_consumer_options(
        "g", tuning=ConsumerSettings.of(settings).tuning, max_records=7
    )

    assert (produced["linger_ms"], produced["max_batch_size"]) == (0, 65536)
    assert produced["compression_type"] == "zstd"
    assert produced["bootstrap_servers"] == settings.kafka_bootstrap
    assert fetched["max_partition_fetch_bytes"] == MAX_MESSAGE_BYTES
    assert subscribed["max_partition_fetch_bytes"] == MAX_MESSAGE_BYTES
    assert subscribed["max_records"] == 7
    broker_options: dict[str, Any] = {}
    monkeypatch.setattr(
        "shared.kafka.KafkaBroker", lambda *_, **options: broker_options.update(options)
    )
    make_broker(settings.kafka, client_id="tuning-test")
    assert (broker_options["linger_ms"], broker_options["compression_type"]) == (0, "zstd")


def test_a_served_process_collects_its_young_generation_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector()

        assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD > before[0]
    finally:
        gc.set_threshold(*before)
