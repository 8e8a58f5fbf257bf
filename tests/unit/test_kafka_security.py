"""Kafka transport and identity: one function decides them for every client.

Issue 12, "Kafka security": settings for the protocol (PLAINTEXT, SSL,
SASL_SSL), the SASL mechanism (SCRAM-SHA-512, PLAIN), user and password (or a
file), CA file and an optional client certificate and key; every client gets
them: broker, producers, admin, consumer-lag readers, the rebuild command,
the simulator.
"""

import ssl
import subprocess
from pathlib import Path

import pytest
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram512
from pydantic import SecretStr

from services.intake.settings import IntakeSettings
from shared.kafka import (
    KafkaConnection,
    broker_security,
    kafka_client_options,
    make_broker,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca")
    key, cert = directory / "ca.key", directory / "ca.crt"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=test-ca", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert


def test_plaintext_is_just_the_address() -> None:
    assert kafka_client_options("127.0.0.1:9092") == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert broker_security(kafka_client_options("127.0.0.1:9092")) is None


def test_sasl_ssl_scram_carries_identity_and_a_verifying_tls_context(ca_file: Path) -> None:
    connection = KafkaConnection(
        "kafka.council.example:9093",
        security_protocol="SASL_SSL",
        username="civicpulse-intake",
        password="pw",
        ca_file=ca_file,
    )
    options = kafka_client_options(connection)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "civicpulse-intake"
    assert options["sasl_plain_password"] == "pw"
    context: ssl.SSLContext = options["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test-ca"),),)]
    security = broker_security(options)
    assert isinstance(security, SASLScram512)
    assert (security.username, security.password) == ("civicpulse-intake", "pw")
    assert security.ssl_context is context


def test_plain_mechanism_and_ssl_only(ca_file: Path) -> None:
    plain = kafka_client_options(
        KafkaConnection(
            "k:9093",
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            username="u",
            password="p",
        )
    )
    assert plain["sasl_mechanism"] == "PLAIN"
    assert type(broker_security(plain)) is SASLPlaintext
    tls = kafka_client_options(KafkaConnection("k:9093", security_protocol="SSL", ca_file=ca_file))
    assert "sasl_mechanism" not in tls
    security = broker_security(tls)
    assert type(security) is BaseSecurity
    assert security.use_ssl


def test_sasl_without_password_or_half_a_client_certificate_is_an_error(ca_file: Path) -> None:
    with pytest.raises(ValueError, match="user name and password"):
        kafka_client_options(KafkaConnection("k:9093", security_protocol="SASL_SSL", username="u"))
    with pytest.raises(ValueError, match="certificate and its key"):
        kafka_client_options(KafkaConnection("k:9093", security_protocol="SSL", cert_file=ca_file))


def test_settings_build_the_connection_and_read_the_password_file(tmp_path: Path) -> None:
    password_file = tmp_path / "kafka-password"
    password_file.write_text("from-the-file\n")
    settings = IntakeSettings(
        kafka_bootstrap="k:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="civicpulse-intake",
        kafka_sasl_password=SecretStr("ignored"),
        kafka_sasl_password_file=password_file,
    )
    assert settings.kafka == KafkaConnection(
        "k:9093",
        security_protocol="SASL_SSL",
        username="civicpulse-intake",
        password="from-the-file",
    )


def test_the_broker_gets_the_security_options() -> None:
    broker = make_broker(
        KafkaConnection("k:9093", security_protocol="SASL_SSL", username="u", password="p"),
        client_id="test",
    )
    connection = broker._connection_kwargs  # what faststream hands aiokafka at connect
    assert connection["security_protocol"] == "SASL_SSL"
    assert connection["sasl_mechanism"] == "SCRAM-SHA-512"
    assert connection["sasl_plain_username"] == "u"


def test_no_client_is_built_from_a_bare_address() -> None:
    """Every aiokafka client in the shipped code takes `kafka_client_options`.

    The plain launcher (civicpulse/infra/) is the exception: it probes only the
    PLAINTEXT broker it started itself.
    """
    launcher = ROOT / "civicpulse" / "infra"
    offenders = [
        f"{path.relative_to(ROOT)}"
        for folder in ("services", "shared", "civicpulse")
        for path in (ROOT / folder).rglob("*.py")
        if "bootstrap_servers=" in path.read_text() and launcher not in path.parents
    ]
    assert offenders == []
