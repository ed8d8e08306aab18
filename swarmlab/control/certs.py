"""The lab's TLS material on the control machine: a CA, one server certificate per node, a
client certificate, and one Docker context per node.

Layout under `.state/<lab>/tls/` (directories 0700, keys 0600; the CA key never leaves here):
`ca.pem`, `ca-key.pem`, `client/{ca,cert,key}.pem`, `<node>/{server-cert,server-key}.pem`.
Certificates are reused until they near expiry, no longer match their CA, or (server
certificates) name another IP or hostname; nothing is ever printed.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import ipaddress
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from swarmlab.model.spec import LabSpec, NodeSpec
from swarmlab.model.state import lab_state_dir

CA_DAYS = 3650
LEAF_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)  # re-issue a certificate this close to its expiry
TLS_PORT = 2376
# where the deploy puts a node's files (CIS 3.9-3.14 modes: certificates 0444, key 0400)
NODE_TLS_DIR = "/etc/docker/tls"
NODE_CA = f"{NODE_TLS_DIR}/ca.pem"
NODE_CERT = f"{NODE_TLS_DIR}/server-cert.pem"
NODE_KEY = f"{NODE_TLS_DIR}/server-key.pem"


@dataclass(frozen=True)
class ServerFiles:
    ca: Path
    cert: Path
    key: Path


def tls_dir(lab: str) -> Path:
    path = lab_state_dir(lab) / "tls"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One writer at a time (pyinfra prepares hosts in one process; parallel CLIs also lock)."""
    with (directory / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with `mode` from the start (a key is never readable by others)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _load_key(path: Path):
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None


def fresh(cert: x509.Certificate | None, now: dt.datetime) -> bool:
    return cert is not None and cert.not_valid_after_utc - now > RENEW_BEFORE


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, Exception):  # InvalidSignature is not a ValueError
        return False


def _pair_matches(cert: x509.Certificate, key) -> bool:
    return key is not None and cert.public_key().public_numbers() == key.public_key().public_numbers()


def ensure_ca(directory: Path, lab: str, now: dt.datetime | None = None) -> tuple[x509.Certificate, object]:
    """The lab CA (certificate, key): reused while fresh, else created anew."""
    now = now or _now()
    cert, key = _load_cert(directory / "ca.pem"), _load_key(directory / "ca-key.pem")
    if fresh(cert, now) and _pair_matches(cert, key):
        return cert, key
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"swarmlab {lab} CA")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .sign(key, hashes.SHA256())
    )
    _write(directory / "ca-key.pem", _key_pem(key), 0o600)
    _write(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return (set(ext.get_values_for_type(x509.DNSName)),
            {str(a) for a in ext.get_values_for_type(x509.IPAddress)})


def _leaf(ca: x509.Certificate, ca_key, common_name: str, usage, now: dt.datetime,
          dns: list[str] = (), ips: list[str] = ()) -> tuple[x509.Certificate, object]:
    key = _key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if dns or ips:
        names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _reusable(cert: x509.Certificate | None, key, ca: x509.Certificate, now: dt.datetime) -> bool:
    return fresh(cert, now) and signed_by(cert, ca) and _pair_matches(cert, key)


def ensure_server_cert(directory: Path, lab: str, node: NodeSpec,
                       now: dt.datetime | None = None) -> ServerFiles:
    """A server certificate for `node` (SANs: its name and lab IP), reused while it is fresh,
    signed by the current CA and names the same IP and hostname."""
    now = now or _now()
    with _locked(directory):
        ca, ca_key = ensure_ca(directory, lab, now)
        out = directory / node.name
        files = ServerFiles(directory / "ca.pem", out / "server-cert.pem", out / "server-key.pem")
        cert, key = _load_cert(files.cert), _load_key(files.key)
        if not (_reusable(cert, key, ca, now) and _sans(cert) == ({node.name}, {node.ip})):
            cert, key = _leaf(ca, ca_key, node.name, ExtendedKeyUsageOID.SERVER_AUTH, now,
                              dns=[node.name], ips=[node.ip])
            _write(files.key, _key_pem(key), 0o600)
            _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return files


def ensure_client_cert(directory: Path, lab: str, now: dt.datetime | None = None) -> Path:
    """`client/{ca,cert,key}.pem` (what `docker --tlsverify` and contexts read)."""
    now = now or _now()
    with _locked(directory):
        ca, ca_key = ensure_ca(directory, lab, now)
        out = directory / "client"
        cert, key = _load_cert(out / "cert.pem"), _load_key(out / "key.pem")
        if not _reusable(cert, key, ca, now):
            cert, key = _leaf(ca, ca_key, f"swarmlab {lab} client",
                              ExtendedKeyUsageOID.CLIENT_AUTH, now)
            _write(out / "key.pem", _key_pem(key), 0o600)
            _write(out / "cert.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
        ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        if not (out / "ca.pem").exists() or (out / "ca.pem").read_bytes() != ca_pem:
            _write(out / "ca.pem", ca_pem, 0o644)
        return out


def docker_config_dir(lab: str) -> Path:
    """The lab's own DOCKER_CONFIG (its contexts, 0700), so ~/.docker is left alone."""
    path = lab_state_dir(lab) / "docker"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def write_contexts(spec: LabSpec, now: dt.datetime | None = None) -> Path:
    """One Docker context per node (named as the node) in `docker_config_dir`, pointing at
    tcp://<ip>:2376 with the client certificate. Written in Docker's context-store layout."""
    directory = tls_dir(spec.name)
    client = ensure_client_cert(directory, spec.name, now)
    config = docker_config_dir(spec.name)
    with _locked(directory):
        for node in spec.nodes:
            cid = hashlib.sha256(node.name.encode()).hexdigest()
            meta = {
                "Name": node.name,
                "Metadata": {"Description": f"swarmlab {spec.name} node {node.name} (TLS)"},
                "Endpoints": {"docker": {"Host": f"tcp://{node.ip}:{TLS_PORT}",
                                         "SkipTLSVerify": False}},
            }
            meta_path = config / "contexts" / "meta" / cid / "meta.json"
            data = json.dumps(meta).encode()
            if not meta_path.exists() or meta_path.read_bytes() != data:
                _write(meta_path, data, 0o644)
            for name in ("ca.pem", "cert.pem", "key.pem"):
                target = config / "contexts" / "tls" / cid / "docker" / name
                content = (client / name).read_bytes()
                if not target.exists() or target.read_bytes() != content:
                    _write(target, content, 0o600 if name == "key.pem" else 0o644)
    return config


def usage_lines(spec: LabSpec) -> list[str]:
    """How to reach the nodes' Docker API from this machine (printed by `swarmlab up`)."""
    config = docker_config_dir(spec.name)
    node = spec.nodes[0].name
    return [
        f"Docker API over TLS on 2376: one context per node in {config}",
        f"  DOCKER_CONFIG={config} docker --context {node} version",
        f"  or: docker --tlsverify --tlscacert {tls_dir(spec.name)}/client/ca.pem "
        f"--tlscert {tls_dir(spec.name)}/client/cert.pem --tlskey {tls_dir(spec.name)}/client/key.pem "
        f"-H tcp://{spec.nodes[0].ip}:{TLS_PORT} version",
    ]
