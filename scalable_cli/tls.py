"""Dask TLS material for a target: a CA, a node certificate and a client certificate.

Generated once into ``.scalable/<target>/tls/`` (files mode 0600, folder 0700) and reused
by every apply of that target. Only paths ever go into state, plans or telemetry.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalable.outputs import TLS, TLS_CA_FILE, TLS_CLIENT_CERT, TLS_CLIENT_KEY
from scalable.private_files import private_dir
from scalable.state.store import atomic_write

VALID_DAYS = 365


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    node_cert: Path  # scheduler and workers
    node_key: Path
    client_cert: Path
    client_key: Path

    def outputs(self) -> dict[str, str]:
        return {
            TLS_CA_FILE: str(self.ca_file),
            TLS_CLIENT_CERT: str(self.client_cert),
            TLS_CLIENT_KEY: str(self.client_key),
        }

    def node_args(self) -> list[str]:
        """Flags for ``dask scheduler`` / ``dask worker``."""
        return ["--tls-ca-file", str(self.ca_file), "--tls-cert", str(self.node_cert),
                "--tls-key", str(self.node_key)]

    def client_security(self) -> Any:
        return client_security(self.ca_file, self.client_cert, self.client_key)


def client_security(ca_file: object, client_cert: object, client_key: object) -> Any:
    """The one place a client ``Security`` is built: TLS required, mutual certificates."""
    # distributed costs ~300 ms to import: only for a client that connects.
    from distributed.security import Security

    return Security(tls_ca_file=str(ca_file), tls_client_cert=str(client_cert),
                    tls_client_key=str(client_key), require_encryption=True)


def tls_files(folder: Path) -> TlsFiles:
    return TlsFiles(
        ca_file=folder / "ca.pem",
        node_cert=folder / "node.pem",
        node_key=folder / "node-key.pem",
        client_cert=folder / "client.pem",
        client_key=folder / "client-key.pem",
    )


def security_from_outputs(outputs: dict[str, str]) -> Any | None:
    """A client Security from a state's outputs, or None where TLS is not used."""
    if not all(k in outputs for k in TLS):
        return None
    return client_security(*(outputs[k] for k in TLS))


def ensure_tls(folder: Path, hosts: list[str] | None = None) -> TlsFiles:
    """Create the CA and certificates if missing; return their paths."""
    files = tls_files(folder)
    if all(p.exists() for p in (files.ca_file, files.node_cert, files.node_key,
                                files.client_cert, files.client_key)):
        return files
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private_dir(folder)
    now = dt.datetime.now(dt.timezone.utc)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def pem_key(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scalable CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, names: list[str]) -> tuple[bytes, bytes]:
        k = key()
        alt: list[x509.GeneralName] = []
        for n in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), pem_key(k)

    node_cert, node_key = leaf("scalable-node", ["localhost", "127.0.0.1", *(hosts or [])])
    client_cert, client_key = leaf("scalable-client", ["localhost"])
    atomic_write(files.ca_file, ca.public_bytes(serialization.Encoding.PEM))
    atomic_write(files.node_cert, node_cert)
    atomic_write(files.node_key, node_key)
    atomic_write(files.client_cert, client_cert)
    atomic_write(files.client_key, client_key)
    return files
