"""Docker Engine on every node: service, plugins, docker0, NAT and filter chains, DNAT."""

from __future__ import annotations

import json

PUBLISHED_PORT = 18080


def test_docker_service_running_and_enabled(host):
    svc = host.service("docker")
    assert svc.is_running, "docker.service is not running"
    assert svc.is_enabled, "docker.service is not enabled at boot"


def test_docker_server_answers(host):
    version = host.check_output("docker version --format '{{.Server.Version}}'")
    assert version and version[0].isdigit(), f"docker server did not answer: {version!r}"


def test_buildx_plugin(host):
    out = host.run("docker buildx version")
    assert out.succeeded, f"buildx plugin missing: {out.stderr}"


def test_compose_v2_plugin(host):
    version = host.check_output("docker compose version --short")
    assert version.lstrip("v").startswith("2."), f"docker compose is not v2: {version!r}"


def test_no_plaintext_tcp_socket(host):
    assert not host.socket("tcp://0.0.0.0:2375").is_listening, "dockerd listens on plaintext 2375"


def _bridge(host) -> dict:
    return json.loads(host.check_output("docker network inspect bridge --format '{{json .IPAM.Config}}'"))[0]


def test_docker0_bridge_with_address(host):
    ipam = _bridge(host)
    link = json.loads(host.check_output("ip -d -j link show docker0"))[0]
    assert link["linkinfo"]["info_kind"] == "bridge", "docker0 is not a bridge"
    assert ipam["Gateway"] in host.interface("docker0").addresses, (
        f"docker0 lacks its gateway address {ipam['Gateway']}"
    )


def test_nat_masquerade_for_docker0_subnet(host):
    subnet = _bridge(host)["Subnet"]
    rules = host.iptables.rules("nat", "POSTROUTING")
    assert f"-A POSTROUTING -s {subnet} ! -o docker0 -j MASQUERADE" in rules, rules


def test_nat_docker_chain_hooked(host):
    pre = host.iptables.rules("nat", "PREROUTING")
    out = host.iptables.rules("nat", "OUTPUT")
    assert any(r.endswith("-j DOCKER") for r in pre), f"PREROUTING does not jump to DOCKER: {pre}"
    assert any(r.endswith("-j DOCKER") for r in out), f"OUTPUT does not jump to DOCKER: {out}"


def test_forward_passes_docker_user(host):
    fwd = host.iptables.rules("filter", "FORWARD")
    assert "-A FORWARD -j DOCKER-USER" in fwd, f"FORWARD does not pass through DOCKER-USER: {fwd}"
    assert "-N DOCKER-USER" in host.iptables.rules("filter", "DOCKER-USER")


def test_published_port_dnat_and_reachable_from_another_node(spec, hosts, probe, node):
    """Publish a port on this node; a DNAT rule appears and another node reaches it."""
    name = "swarmlab-probe-web"
    probe.run(node.name, name, f"-p {PUBLISHED_PORT}:80",
              "sh -c 'echo hello-from-$(hostname) > /www/index.html; httpd -f -p 80 -h /www'")
    host = hosts[node.name]
    try:
        cip = host.check_output(
            f"docker inspect -f '{{{{.NetworkSettings.IPAddress}}}}' {name}"
        )
        dnat = [r for r in host.iptables.rules("nat", "DOCKER") if "DNAT" in r]
        assert any(f"--dport {PUBLISHED_PORT}" in r and f"{cip}:80" in r for r in dnat), dnat
        others = [n for n in spec.nodes if n.name != node.name]
        if not others:
            return
        peer = hosts[others[0].name]
        body = peer.check_output(
            "python3 -c \"import urllib.request,sys;"
            f"print(urllib.request.urlopen('http://{node.ip}:{PUBLISHED_PORT}/', timeout=5)"
            ".read().decode().strip())\""
        )
        assert body == f"hello-from-{host.check_output(f'docker inspect -f {{{{.Config.Hostname}}}} {name}')}"
    finally:
        host.run(f"docker rm -f {name}")
