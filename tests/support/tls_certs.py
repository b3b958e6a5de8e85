"""Throw-away certificates made with the ``openssl`` command, for TLS tests on loopback.

A test CA signs a server certificate for ``localhost`` only (no IP address, so
connecting to 127.0.0.1 is a wrong host name) and a client certificate; a
second, unrelated CA stands for "a certificate from another CA".
"""

from __future__ import annotations

import shutil
import subprocess  # nosec B404 - the openssl command with a fixed argv
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl")


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    assert OPENSSL is not None, "openssl is not installed"
    subprocess.run([OPENSSL, *map(str, args)], cwd=cwd, check=True,  # nosec B603
                   capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
             "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    return cert, key


def _leaf(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"{name}.key", directory / f"{name}.csr",
                      directory / f"{name}.pem")
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", f"/CN={name}", cwd=directory)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", ext, cwd=directory)
    for path in (key, ca[1]):
        path.chmod(0o644)  # the broker and redis-server run as this user; keys are test-only
    return cert, key


def self_signed(directory: Path) -> tuple[Path, Path]:
    """One self-signed certificate and its key (a CA bundle or a client certificate)."""
    return _ca(directory, "self-signed")


def make_certs(directory: Path) -> Certs:
    """A CA, a server certificate for DNS:localhost, a client certificate, another CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "test-ca")
    server = _leaf(directory, "localhost", ca,
                   "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"
                   "basicConstraints=CA:FALSE\n")
    client = _leaf(directory, "cluster-service-client", ca,
                   "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    other = _ca(directory, "other-ca")
    return Certs(ca=ca[0], server_cert=server[0], server_key=server[1], client_cert=client[0],
                 client_key=client[1], other_ca=other[0])
