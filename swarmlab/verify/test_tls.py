"""The Docker API over TLS (`docker.tls`), asked from this machine as a user would: the lab
client certificate gets an answer, a client without one and plaintext HTTP are refused."""

from __future__ import annotations

import http.client
import json
import socket
import ssl

import pytest

from swarmlab.control import certs as tls
from swarmlab.model.spec import LabSpec, NodeSpec

TIMEOUT = 10


def _need_tls(spec: LabSpec) -> None:
    if not spec.docker.tls:
        pytest.skip("docker.tls is off: no Docker API on 2376 to check")


def _context(spec: LabSpec, client_cert: bool) -> ssl.SSLContext:
    client = tls.tls_dir(spec.name) / "client"
    ctx = ssl.create_default_context(cafile=str(client / "ca.pem"))
    if client_cert:
        ctx.load_cert_chain(str(client / "cert.pem"), str(client / "key.pem"))
    return ctx


def _version(spec: LabSpec, node: NodeSpec, client_cert: bool) -> dict:
    conn = http.client.HTTPSConnection(node.ip, tls.TLS_PORT, timeout=TIMEOUT,
                                       context=_context(spec, client_cert))
    try:
        conn.request("GET", "/version")
        resp = conn.getresponse()
        return {"status": resp.status, "body": json.loads(resp.read() or b"{}")}
    finally:
        conn.close()


def test_docker_api_over_tls_answers_a_lab_client(spec, node):
    """A client with the lab CA and the lab client certificate gets `docker version`, and the
    server certificate names the node's IP (hostname checking on)."""
    _need_tls(spec)
    got = _version(spec, node, client_cert=True)
    assert got["status"] == 200 and got["body"].get("Version"), got


def test_docker_api_over_tls_refuses_a_client_without_certificate(spec, node):
    """A client that trusts the lab CA but has no certificate reaches the TLS server on 2376 and
    is refused by it. Nothing listening, a missing CA file or a server certificate the lab CA
    does not vouch for fail the check (they are not a refusal)."""
    _need_tls(spec)
    ctx = _context(spec, client_cert=False)  # a missing CA file raises here
    refused = tls_refusal(ctx, node.ip)
    assert refused, f"{node.ip}:{tls.TLS_PORT} answered a client without certificate"


def tls_refusal(ctx: ssl.SSLContext, ip: str, port: int = tls.TLS_PORT) -> str:
    """Why the TLS server on ip:port refused the client ("" when it answered a request).
    Connecting (nothing listening) and verifying the server's certificate raise."""
    with socket.create_connection((ip, port), timeout=TIMEOUT) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=ip) as s:
                s.sendall(b"GET /version HTTP/1.0\r\nHost: x\r\n\r\n")
                data = s.recv(4096)  # TLS 1.3: the refusal arrives after the handshake
        except ssl.SSLCertVerificationError:
            raise
        except (ssl.SSLError, ConnectionResetError) as e:
            return f"{type(e).__name__}: {e}"
    return "" if data else "closed without an answer"


def test_docker_api_on_2376_refuses_plaintext(spec, node):
    """Plain HTTP to 2376 gets no Docker answer (the TLS server rejects it)."""
    _need_tls(spec)
    with socket.create_connection((node.ip, tls.TLS_PORT), timeout=TIMEOUT) as s:
        s.sendall(b"GET /version HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert b'"ApiVersion"' not in data, "2376 answered plaintext HTTP with the Docker API"


def test_tls_listener_only_on_the_lab_address(spec, node, host):
    """dockerd listens on <lab IP>:2376 only (not on a wildcard address)."""
    _need_tls(spec)
    on_2376 = [s for s in host.socket.get_listening_sockets()
               if s.startswith("tcp://") and s.rsplit(":", 1)[-1] == str(tls.TLS_PORT)]
    assert on_2376 == [f"tcp://{node.ip}:{tls.TLS_PORT}"], on_2376
