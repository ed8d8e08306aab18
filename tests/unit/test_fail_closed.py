"""Checks fail closed: fed empty facts or reads that failed (exit 1, 127, 255, or exit 0 with no
output), no CIS check and no verification check passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmlab.model.spec import load_spec
from swarmlab.verify import cis as security
from swarmlab.verify import snapshot as shared

ROOT = Path(__file__).resolve().parents[2]
SPECS = {"secure": ROOT / "tests" / "live" / "labs" / "secure.yaml", "local": ROOT / "labs" / "local.yaml"}
FAILED_READS = [(1, ""), (127, "sh: 1: docker: not found"), (255, ""), (0, "")]


@pytest.mark.parametrize("lab", sorted(SPECS))
def test_every_cis_check_fails_on_empty_facts(lab):
    spec = load_spec(SPECS[lab])
    node = spec.managers[0]
    findings = security.evaluate_all(spec, node, security.Facts())
    assert {f.cis for f in findings} == {cis for cis, *_ in security.CHECKS}
    passed = [f.line(node.name) for f in findings if f.status != security.FAIL]
    assert not passed, passed
    assert all(f.detail.startswith("could not read") for f in findings if f.cis != "7.8")


@pytest.mark.parametrize("lab", sorted(SPECS))
@pytest.mark.parametrize(("rc", "out"), FAILED_READS)
def test_no_cis_check_passes_when_every_read_fails(lab, rc, out):
    spec = load_spec(SPECS[lab])
    node = spec.managers[0]
    facts = security.collect(lambda command: (rc, out), manager=True, kernel_command=shared.KERNEL_MODULES)
    passed = [f.line(node.name) for f in security.evaluate_all(spec, node, facts)
              if f.status == security.PASS]
    assert not passed, passed


def test_a_read_that_fails_alone_fails_only_the_checks_that_need_it():
    """Every read but one succeeds: the checks needing the failed one fail and name it."""
    spec = load_spec(SPECS["secure"])
    node = spec.managers[0]
    for read in security.READS:
        facts = security.Facts(info={"ServerVersion": "28"}, read=set(security.READS) - {read})
        for f in security.evaluate_all(spec, node, facts):
            if read in security.NEEDS[f.cis]:
                assert f.status == security.FAIL and read in f.detail, (read, f)


def test_collect_counts_only_reads_that_answered():
    answers = {"docker info --format '{{json .}}'": '{"ServerVersion": "28.5.1"}',
               "cat /etc/docker/daemon.json": "{}",
               security.PID: "812",
               "tr '\\0' ' ' < /proc/812/cmdline": "/usr/sbin/dockerd -H fd://",
               "ps -o user= -p 812": "root\n",
               shared.KERNEL_MODULES: "overlay loaded\nesp4 loadable\n"}
    facts = security.collect(lambda c: (0, answers[c]) if c in answers else (1, ""), manager=True,
                             kernel_command=shared.KERNEL_MODULES)
    assert facts.read == {"info", "daemon.json", "args", "user", "kernel"}
    assert facts.user == "root" and facts.kernel == {"overlay": "loaded", "esp4": "loadable"}
    assert facts.args == ["/usr/sbin/dockerd", "-H", "fd://"]


# --- the TLS refusal check, against a TLS server on loopback ------------------------------

def _tls_server(tmp_path: Path, require_client_cert: bool):
    """A TLS server on 127.0.0.1 (the lab CA's server certificate) answering one request."""
    import socket
    import ssl
    import threading

    from swarmlab.control import certs as tls
    from swarmlab.model.spec import NodeSpec

    tmp_path.mkdir(parents=True, exist_ok=True)
    files = tls.ensure_server_cert(tmp_path, "t", NodeSpec(name="n1", distro="debian-13", ip="127.0.0.1",
                                                           role="manager"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.cert, files.key)
    ctx.load_verify_locations(files.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as s:
                s.recv(4096)
                s.sendall(b"HTTP/1.0 200 OK\r\n\r\n{\"ApiVersion\": \"1.51\"}")
        except (ssl.SSLError, OSError):
            pass

    threading.Thread(target=serve, daemon=True).start()
    return listener, files.ca


def _client(ca: Path):
    import ssl

    return ssl.create_default_context(cafile=str(ca))


def test_tls_refusal_seen_only_from_a_server_that_refuses(tmp_path):
    from swarmlab.verify.test_tls import tls_refusal

    listener, ca = _tls_server(tmp_path, require_client_cert=True)
    with listener:
        assert tls_refusal(_client(ca), "127.0.0.1", listener.getsockname()[1])
    listener, ca = _tls_server(tmp_path / "open", require_client_cert=False)
    with listener:
        assert tls_refusal(_client(ca), "127.0.0.1", listener.getsockname()[1]) == ""


def test_tls_refusal_check_fails_when_nothing_listens_or_the_ca_is_missing(tmp_path):
    import socket
    import ssl

    from swarmlab.verify.test_tls import tls_refusal

    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    listener, ca = _tls_server(tmp_path, require_client_cert=True)
    with pytest.raises(ConnectionRefusedError):
        tls_refusal(_client(ca), "127.0.0.1", port)
    with pytest.raises(FileNotFoundError):
        _client(tmp_path / "absent.pem")
    with listener:  # a CA that did not sign the server's certificate is no refusal either
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_refusal(_client(_tls_server(tmp_path / "other", True)[1]), "127.0.0.1",
                        listener.getsockname()[1])
