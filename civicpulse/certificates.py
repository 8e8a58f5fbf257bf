"""A local CA and server certificates for `civicpulse infra up --secure`, made with openssl."""

import subprocess
from pathlib import Path

from civicpulse.kafka_acls import BROKER

CERT_DAYS = 30


class CertificateError(RuntimeError):
    pass


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CertificateError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_certificates(tls: Path) -> None:
    """A CA, then a broker and a PostgreSQL certificate for 127.0.0.1 and localhost.

    The broker's certificate is also its client identity (CN=kafka-broker) on
    the mutual-TLS inter-broker and controller listeners.
    """
    tls.mkdir(parents=True, exist_ok=True)
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(CERT_DAYS)),
        *("-subj", "/CN=CivicPulse local CA", "-keyout", str(tls / "ca.key")),
        *("-out", str(tls / "ca.crt")),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    extensions = tls / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "basicConstraints=CA:FALSE\n"
    )
    for name, common_name in (("broker", BROKER), ("postgres", "localhost")):
        _openssl(
            *("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={common_name}"),
            *("-keyout", str(tls / f"{name}.key"), "-out", str(tls / f"{name}.csr")),
        )
        _openssl(
            *("x509", "-req", "-in", str(tls / f"{name}.csr"), "-CA", str(tls / "ca.crt")),
            *("-CAkey", str(tls / "ca.key"), "-CAcreateserial", "-days", str(CERT_DAYS)),
            *("-extfile", str(extensions), "-out", str(tls / f"{name}.crt")),
        )
    # Kafka's PEM key store: the PKCS#8 key, then the certificate chain.
    (tls / "broker.pem").write_text(
        (tls / "broker.key").read_text() + (tls / "broker.crt").read_text()
    )
    for key in tls.glob("*.key"):
        key.chmod(0o600)
