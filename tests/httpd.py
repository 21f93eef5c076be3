"""Test servers for the tcp and http kinds: a throwaway PKI and nginx on loopback.

``Pki`` issues certificates with ``cryptography`` (root -> intermediate -> leaf,
any validity window). ``Nginx`` runs the system nginx with its own prefix and
configuration in a temporary folder, in the foreground, and stops it at the end.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import require_tool, stop_process, wait_for

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
DAY = dt.timedelta(days=1)


@dataclass
class Cert:
    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    key_path: Path

    @property
    def not_after(self) -> float:
        return self.cert.not_valid_after_utc.timestamp()


class Pki:
    """Certificates written as PEM files under ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def root(self, name: str, days: int = 3650) -> Cert:
        return self._issue(name, None, ca=True, not_before=NOW - DAY, not_after=NOW + days * DAY)

    def intermediate(self, name: str, issuer: Cert, days: int = 1825) -> Cert:
        return self._issue(name, issuer, ca=True, not_before=NOW - DAY, not_after=NOW + days * DAY)

    def leaf(self, name: str, issuer: Cert, *, days: int = 90, expired: bool = False,
             sans: tuple[str, ...] = ("portal.test", "localhost", "127.0.0.1")) -> Cert:
        if expired:
            return self._issue(name, issuer, ca=False, not_before=NOW - 30 * DAY, not_after=NOW - DAY, sans=sans)
        return self._issue(name, issuer, ca=False, not_before=NOW - DAY, not_after=NOW + days * DAY, sans=sans)

    def chain_file(self, name: str, *certs: Cert) -> Path:
        """What a server presents: the leaf first, then the intermediates."""
        path = self.folder / f"{name}.chain.pem"
        path.write_bytes(b"".join(c.cert.public_bytes(serialization.Encoding.PEM) for c in certs))
        return path

    def _issue(self, name: str, issuer: Cert | None, *, ca: bool, not_before: dt.datetime, not_after: dt.datetime,
               sans: tuple[str, ...] = ()) -> Cert:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lifeline tests")])
        sign_key = issuer.key if issuer else key
        builder = (x509.CertificateBuilder()
                   .subject_name(subject).issuer_name(issuer.cert.subject if issuer else subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False), critical=True)
        else:
            names = [x509.IPAddress(ipaddress.ip_address(s)) if s[0].isdigit() or ":" in s else x509.DNSName(s)
                     for s in sans]
            builder = (builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
                       .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                                      critical=False))
        cert = builder.sign(sign_key, hashes.SHA256())
        slug = name.replace(" ", "-")
        cert_path, key_path = self.folder / f"{slug}.pem", self.folder / f"{slug}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        os.chmod(key_path, 0o600)
        return Cert(name, cert, key, cert_path, key_path)


def free_port_on(*hosts: str) -> int:
    """A TCP port free on every one of ``hosts`` (loopback addresses)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
            return port
        except OSError:
            continue
    raise AssertionError(f"no common free port on {hosts}")


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Nginx:
    """nginx in the foreground with ``servers`` (nginx ``server {}`` blocks) in a prefix of its own."""

    def __init__(self, prefix: Path, servers: str, listens: list[tuple[str, int]]) -> None:
        binary = require_tool("nginx", "nginx-light")
        self.prefix = prefix
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(f"""
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    default_type text/plain;
    absolute_redirect off;
    server_tokens off;
{servers}
}}
""")
        self.proc = subprocess.Popen([binary, "-e", str(prefix / "logs" / "error.log"), "-p", str(prefix),
                                      "-c", str(conf), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: self._alive() and all(_answers(h, p) for h, p in listens), 15,
                     f"nginx to listen on {listens}")
        except BaseException:
            self.stop()
            raise

    def _alive(self) -> bool:
        if self.proc.poll() is not None:
            log = (self.prefix / "logs" / "error.log")
            raise AssertionError(f"nginx exited with {self.proc.returncode}: "
                                 f"{self.proc.stderr.read().decode(errors='replace')}"
                                 f"{log.read_text() if log.exists() else ''}")
        return True

    def stop(self) -> None:
        stop_process(self.proc)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
