"""Docker Engine on every node: service, plugins, docker0, NAT and filter chains, DNAT."""

from __future__ import annotations

import json
import shlex

import pytest

from swarmlab.model.distros import DOCKER_PACKAGES
from swarmlab.provision.docker import running_drift
from swarmlab.provision.facts import DockerDaemonState
from swarmlab.verify import expected, repairs
from swarmlab.verify import snapshot as shared
from swarmlab.verify.conftest import other_node
from swarmlab.verify.rules import Rule, dnat_to, forward_consults_docker_user, jumps, masquerades, parse_rules
from swarmlab.verify.workloads import PUBLISHED_PORT, WEB

DAEMON_JSON = "/etc/docker/daemon.json"


def test_docker_service_running_and_enabled(host):
    svc = host.service("docker")
    assert svc.is_running, "docker.service is not running"
    assert svc.is_enabled, "docker.service is not enabled at boot"


def test_docker_server_answers(snap):
    version = snap.check_output(shared.SERVER_VERSION)
    assert version and version[0].isdigit(), f"docker server did not answer: {version!r}"


def test_buildx_plugin(snap):
    out = snap.run(shared.BUILDX_VERSION)
    assert out.succeeded, f"buildx plugin missing: {out.stderr}"


def test_compose_v2_plugin(snap):
    version = snap.check_output(shared.COMPOSE_VERSION)
    assert version.lstrip("v").startswith("2."), f"docker compose is not v2: {version!r}"


PLAINTEXT_PORT = 2375


def _tcp_api_hosts(args: list[str]) -> list[str]:
    """tcp:// endpoints in dockerd's arguments (-H X, -HX, --host X, --host=X)."""
    out = []
    for i, arg in enumerate(args):
        value = None
        if arg in ("-H", "--host") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--host="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-H") and len(arg) > 2:
            value = arg[2:]
        if value and value.startswith("tcp://"):
            out.append(value)
    return out


def test_no_plaintext_docker_api(host, snap):
    """Nothing listens on 2375 (any address), and dockerd serves no TCP API without TLS."""
    on_2375 = [s for s in host.socket.get_listening_sockets()
               if s.startswith("tcp://") and s.rsplit(":", 1)[-1] == str(PLAINTEXT_PORT)]
    assert not on_2375, f"listening on the plaintext Docker API port {PLAINTEXT_PORT}: {on_2375}"
    problems = []
    for proc in host.process.filter(comm="dockerd"):
        args = proc.args.split()
        tcp = _tcp_api_hosts(args)
        if tcp and "--tlsverify" not in args:
            problems.append(f"dockerd (pid {proc.pid}) serves {tcp} without --tlsverify")
    config = _daemon_json(snap)
    tcp = [h for h in config.get("hosts", []) if str(h).startswith("tcp://")]
    if tcp and not config.get("tlsverify"):
        problems.append(f"daemon.json hosts {tcp} without tlsverify")
    assert not problems, "; ".join(problems)


def _daemon_json(snap) -> dict:
    read = snap.run(shared.DAEMON_JSON)
    return json.loads(read.stdout) if read.succeeded else {}


def test_daemon_json_is_the_specs(snap, spec):
    """/etc/docker/daemon.json holds what the spec asks for (the deploy owns the file); the
    expected content is computed here from the spec (swarmlab/verify/expected.py)."""
    assert snap.run(shared.DAEMON_JSON).succeeded, f"{DAEMON_JSON} is missing"
    diff = expected.dict_differences(_daemon_json(snap), expected.daemon_json(spec))
    assert not diff, f"{DAEMON_JSON} differs from the spec (key: (file, spec)): {diff}"


def test_running_daemon_uses_daemon_json(host, snap):
    """What dockerd runs with (docker info) is daemon.json, not an older or edited copy."""
    fact = DockerDaemonState()
    daemon = fact.process(host.check_output(fact.command()).splitlines())
    drift = running_drift(_daemon_json(snap), daemon)
    assert not drift, "; ".join(drift)


def _bridge(snap) -> dict:
    return json.loads(snap.check_output(shared.BRIDGE_IPAM))[0]


def test_docker0_bridge_with_address(host, snap):
    ipam = _bridge(snap)
    assert host.file("/sys/class/net/docker0/bridge").is_directory, "docker0 is not a bridge"
    assert ipam["Gateway"] in host.interface("docker0").addresses, (
        f"docker0 lacks its gateway address {ipam['Gateway']}"
    )


def _rules(host, table: str) -> list[Rule]:
    """Live rules (read while a workload runs)."""
    return parse_rules(host.iptables.rules(table))


def test_nat_masquerade_for_docker0_subnet(snap):
    subnet = _bridge(snap)["Subnet"]
    assert masquerades(parse_rules(snap.lines(shared.NAT_RULES)), subnet, "docker0"), (
        f"no MASQUERADE for {subnet} leaving by another interface than docker0: containers "
        "on the default bridge cannot reach beyond the node"
    )


def test_nat_docker_chain_hooked(snap):
    rules = parse_rules(snap.lines(shared.NAT_RULES))
    for chain in ("PREROUTING", "OUTPUT"):
        hooks = [r for r in jumps(rules, chain, "DOCKER") if r.get("--dst-type") == "LOCAL"]
        assert hooks, (
            f"nat {chain} does not send traffic for local addresses to the DOCKER chain: "
            "published ports are not translated"
        )


def test_forward_passes_docker_user(snap):
    rules = parse_rules(snap.lines(shared.FILTER_RULES))
    assert forward_consults_docker_user(rules), (
        "FORWARD does not pass packets through DOCKER-USER before Docker's own rules: "
        f"{[r.raw for r in rules if r.chain == 'FORWARD']}"
    )


@pytest.fixture
def published_web(workloads):
    return workloads.web


def test_published_port_dnat_and_reachable_from_another_node(spec, hosts, published_web, node):
    """Publish a port on this node; a DNAT rule appears and another node reaches it."""
    peer_node = other_node(spec, node, "reach the published port from")
    why = published_web.errors.get(node.name)
    assert not why, f"the web probe did not start: {why}"
    host = hosts[node.name]
    web = host.docker(WEB).inspect()
    cip, hostname = web["NetworkSettings"]["IPAddress"], web["Config"]["Hostname"]
    assert dnat_to(_rules(host, "nat"), PUBLISHED_PORT, "tcp", f"{cip}:80"), (
        f"no DNAT rule sends tcp port {PUBLISHED_PORT} to {cip}:80"
    )
    body = hosts[peer_node.name].check_output(
        "python3 -c \"import urllib.request,sys;"
        f"print(urllib.request.urlopen('http://{node.ip}:{PUBLISHED_PORT}/', timeout=5)"
        ".read().decode().strip())\""
    )
    assert body == f"hello-from-{hostname}"


# --- spec fields without a check before, and repairs for state the deploy does not own ---

def test_docker_users_in_the_docker_group(host, spec):
    """docker.users: the docker group exists and each listed account is in it (the deploy
    adds it). A failed read fails the check."""
    group = host.run("getent group docker")
    assert group.rc == 0 and group.stdout.startswith("docker:"), (
        f"cannot read the docker group (exit {group.rc}): {(group.stderr or group.stdout).strip()[:200]}")
    wrong = []
    for user in spec.docker.users:
        groups = host.run(f"id -nG {shlex.quote(user)}")
        if groups.rc != 0 or not groups.stdout.strip():
            wrong.append(f"{user}: no such account or unreadable (exit {groups.rc})")
        elif "docker" not in groups.stdout.split():
            wrong.append(f"{user} is not in the docker group (groups: {groups.stdout.strip()})")
    assert not wrong, "; ".join(wrong)


def test_docker_packages_from_the_specs_source(host, spec, node):
    """docker.source / docker.version: the engine packages of the spec's source are installed
    (docker.io from the distro, docker-ce from Docker's repository), at the pinned version."""
    source = spec.docker_source(node)
    packages = DOCKER_PACKAGES[(node.distro, source)].install
    missing = [p for p in packages if not host.package(p).is_installed]
    assert not missing, f"docker.source {source}: not installed: {missing}"
    if spec.docker.version and source == "official":
        have = host.package("docker-ce").version
        assert have == spec.docker.version, f"docker-ce is {have}, docker.version is {spec.docker.version}"


def test_no_dropin_serves_plaintext_api(host, record_property):
    """No systemd drop-in of docker.service gives dockerd a tcp:// host without TLS; each one
    found is printed with the command that removes it (and restarts docker)."""
    show = host.run("systemctl show docker.service -p DropInPaths --value")
    assert show.rc == 0, f"cannot read docker.service's drop-ins (exit {show.rc}): {show.stderr.strip()[:200]}"
    paths = show.stdout.split()
    found = []
    for path in paths:
        text = host.file(path).content_string
        if "tcp://" in text and "tlsverify" not in text:
            found.append(path)
    if found:
        record_property(repairs.PROPERTY, f"rm -f {shlex.join(found)} && systemctl daemon-reload "
                                          f"&& {repairs.DOCKER_RESTART}")
    assert not found, f"docker.service drop-ins open the Docker API on plaintext TCP: {found}"
