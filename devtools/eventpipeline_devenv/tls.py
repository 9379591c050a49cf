"""Certificates of the local stack: throwaway CAs and the serving certificates they sign.

The brokers' TLS listeners (Kafka SASL_SSL, Pulsar pulsar+ssl:// and https://) share one CA,
made at the first `dev up` that needs it and kept in the state dir, so that Kafka and Pulsar
started in the same run present certificates clients verify with the same `ca.crt`. The
serving certificate names localhost and 127.0.0.1, the addresses the stack advertises.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from eventpipeline_devenv.runtime import Layout

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
LOOPBACK_NAMES = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
BROKER_CA_NAME = "eventpipeline-devenv-broker-ca"


@dataclass(frozen=True)
class ServerTls:
    """PEM files of a serving certificate: what a TLS listener presents and what clients trust."""

    ca_cert: Path  # the CA clients verify with (a Secret's `ca.crt`)
    cert: Path  # the serving certificate
    key: Path  # its private key, PKCS#8, unencrypted, owner-only

    def key_pem(self) -> str:
        return self.key.read_text()

    def cert_pem(self) -> str:
        return self.cert.read_text()

    def ca_pem(self) -> str:
        return self.ca_cert.read_text()


def certificate_builder(subject: x509.Name, issuer: x509.Name, public_key: Any) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # Backdated a little so a clock skew between tools does not make it "not yet valid".
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
    )


def new_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign certificates and nothing else."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        certificate_builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def serving_certificate(
    ca_key: PrivateKey, ca_cert: x509.Certificate, subject: x509.Name, public_key: Any
) -> x509.Certificate:
    """A server certificate for the loopback names, signed by the CA."""
    return (
        certificate_builder(subject, ca_cert.subject, public_key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(list(LOOPBACK_NAMES)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def write_cert(path: Path, certificate: x509.Certificate) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def write_key(path: Path, key: PrivateKey) -> None:
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def broker_tls(layout: Layout) -> ServerTls:
    """The brokers' CA and serving certificate, made once per stack and reused by each broker.

    RSA for the serving key: the JVM's PEM readers (Kafka's PEM key store, Netty in Pulsar) and
    every client library accept it without extra providers.
    """
    directory = layout.state_dir / "tls"
    files = ServerTls(ca_cert=directory / "ca.crt", cert=directory / "broker.crt", key=directory / "broker.key")
    if files.ca_cert.exists() and files.cert.exists() and files.key.exists():
        return files
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key, ca_cert = new_ca(BROKER_CA_NAME)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    write_key(files.key, key)
    write_cert(files.cert, serving_certificate(ca_key, ca_cert, subject, key.public_key()))
    # The CA last: its presence says the set is complete. Its key is not kept: nothing else is signed.
    write_cert(files.ca_cert, ca_cert)
    return files
