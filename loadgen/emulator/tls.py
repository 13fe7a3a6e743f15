"""HTTPS for the emulator: a certificate authority made at start, and the server's TLS context.

Why a CA of its own rather than one self-signed certificate: the SDKs verify
certificates as they do against the real service, and every one of them can be
told to trust one more CA file (``SSL_CERT_FILE`` for Python's ssl, httpx and
urllib3; ``NODE_EXTRA_CA_CERTS`` for Node; ``REQUESTS_CA_BUNDLE`` for
requests), whereas trusting a bare server certificate is not possible
everywhere. The CA's key lives only in this process's memory and is dropped
once the server certificate is signed; the server's key touches the disk only
for the instant ``load_cert_chain`` needs a file (mode 0600, deleted at once).

Keys are ECDSA P-256 (what most public endpoints serve today, and fast to
make: a few milliseconds at start). The server certificate names 127.0.0.1,
localhost and every address the emulator is asked to listen on. ALPN offers
``h2`` then ``http/1.1``, so a client that speaks HTTP/2 gets it and any other
gets HTTP/1.1.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from typing import Iterable, Optional

ALPN = ["h2", "http/1.1"]
_VALID_DAYS = 7  # an emulator runs for a benchmark, not for a year


class ServerTLS:
    """A fresh CA, the server certificate it signed, and where the CA file was written."""

    def __init__(self, hosts: Iterable[str] = ("127.0.0.1",), ca_file: Optional[str] = None):
        ca_pem, chain_pem, key_pem = _make_certificates(hosts)
        self._own_dir = None
        if ca_file is None:
            self._own_dir = tempfile.mkdtemp(prefix="loadgen-emulator-tls-")
            ca_file = os.path.join(self._own_dir, "ca.pem")
        self.ca_file = os.path.abspath(ca_file)
        _write(self.ca_file, ca_pem, 0o644)
        self.context = _server_context(chain_pem, key_pem)

    def cleanup(self) -> None:
        """Remove the CA file if this object chose where it went (a path given by the caller stays)."""
        if self._own_dir is not None:
            for name in os.listdir(self._own_dir):
                os.unlink(os.path.join(self._own_dir, name))
            os.rmdir(self._own_dir)
            self._own_dir = None


def client_context(ca_file: str, alpn=ALPN) -> ssl.SSLContext:
    """A client context that trusts the emulator's CA (for tests and benchmarks)."""
    context = ssl.create_default_context(cafile=ca_file)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def _names(hosts: Iterable[str]) -> list:
    from cryptography import x509

    names, seen = [], set()
    for host in ["127.0.0.1", "localhost", *hosts]:
        if not host or host in seen or host in ("0.0.0.0", "::"):
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _make_certificates(hosts: Iterable[str]) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, server certificate + CA, server key), all PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=_VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loadgen emulator CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loadgen emulator")]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(start).not_valid_after(end)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem)
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca_pem, server.public_bytes(pem) + ca_pem, key_pem


def _server_context(chain_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(ALPN)
    fd, path = tempfile.mkstemp(prefix="loadgen-emulator-key-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp's file is 0600
            f.write(key_pem + chain_pem)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
    return context


def _write(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
