"""A private CA and broker certificates for a deployment (``govbus certs create``).

Made with ``cryptography``. Files in ``<home>/tls``: ``ca.pem`` (give it to clients: they
verify the broker with it and nothing else), ``ca-key.pem`` (keep it offline after use),
``broker.pem`` + ``broker-key.pem``, and ``broker-keystore.pem`` (key and chain in one file,
the PEM keystore Kafka reads). Keys are written owner-only.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "govbus"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes, private: bool = False) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def create(directory: Path, hosts: list[str], days: int = 825) -> list[Path]:
    """Make the CA and a broker certificate valid for ``hosts`` (names or IP addresses)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("govbus private CA")).issuer_name(_name("govbus private CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    broker_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    broker = (x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca.subject)
              .public_key(broker_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
              .add_extension(x509.SubjectAlternativeName(names), critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    ca_pem, broker_pem = ca.public_bytes(serialization.Encoding.PEM), broker.public_bytes(serialization.Encoding.PEM)
    files = {"ca.pem": (ca_pem, False), "ca-key.pem": (_key_pem(ca_key), True), "broker.pem": (broker_pem, False),
             "broker-key.pem": (_key_pem(broker_key), True),
             "broker-keystore.pem": (_key_pem(broker_key) + broker_pem + ca_pem, True)}
    for name, (data, private) in files.items():
        _write(directory / name, data, private)
    return [directory / name for name in files]
