"""What needs the kernel's IPVS and IPsec: the ingress routing mesh, VIP load balancing, and the
encrypted overlay's traffic on the wire.

Node containers on a kernel without IP_VS or ESP skip these with the reason; on VMs (a real
guest kernel) they run. Each check starts its own labelled probe service and removes it.
"""

from __future__ import annotations

import json
import shlex
import threading
import time

import pytest

from swarmlab.verify import snapshot as shared
from swarmlab.verify import wire
from swarmlab.verify.conftest import require_kernel
from swarmlab.verify.probe import IMAGE, LABEL
from swarmlab.verify.test_swarm import HTTP_GET, _overlay_ip, _ping, _wait_running, require_swarm
from swarmlab.verify.workloads import PROBE_CONTAINERS

MESH = "swarmlab-probe-mesh"
MESH_PORT = 18082
VIP = "swarmlab-probe-vip"
INGRESS_NETNS = "/run/docker/netns/ingress_sbox"
WEB = "sh -c 'echo task-$(hostname) > /www/index.html; httpd -f -p 80 -h /www'"


@pytest.fixture(autouse=True)
def _swarm_enabled(spec):
    """Every check in this module needs the swarm."""
    require_swarm(spec)


def _service(manager, name: str, args: str) -> None:
    manager.check_output(
        f"docker service rm {name} >/dev/null 2>&1; "
        f"docker service create -d --name {name} --label {LABEL} --stop-grace-period 1s {args} {IMAGE} {WEB}"
    )


def _remove(manager, hosts, spec, name: str) -> None:
    manager.run(f"docker service rm {name}")
    for node in spec.nodes:  # the tasks stop asynchronously: wait (bounded) until they are gone
        hosts[node.name].run(
            f"for i in $(seq 30); do [ -z \"$(docker ps -q --filter label=com.docker.swarm.service.name={name})\" ]"
            " && break; sleep 1; done")


def _ipvs_real_servers(host) -> int:
    """Real servers behind the ingress IPVS services in the node's ingress sandbox."""
    out = host.run(f"nsenter --net={INGRESS_NETNS} cat /proc/net/ip_vs")
    assert out.rc == 0, f"cannot read IPVS in {INGRESS_NETNS}: {(out.stderr or out.stdout).strip()[:200]}"
    return sum(1 for line in out.stdout.splitlines() if line.strip().startswith("->"))


def test_routing_mesh_answers_on_every_node(spec, hosts, first_manager, probe):
    """One task on the last node publishes a port through the ingress network: every node
    answers on it (the nodes without the task forward through IPVS over the ingress overlay),
    and each node's ingress sandbox holds the IPVS service with the task as real server."""
    for node in spec.nodes:
        require_kernel(hosts[node.name], "ip_vs")
    if len(spec.nodes) < 2:
        pytest.skip("single-node lab: no node without the task to route through the mesh")
    runner = spec.nodes[-1]
    _service(first_manager, MESH, f"--replicas 1 --constraint node.hostname=={shlex.quote(runner.name)} "
                                  f"--publish published={MESH_PORT},target=80")
    try:
        tasks = _wait_running(first_manager, MESH, 1)
        assert {t["Node"] for t in tasks if t["CurrentState"].startswith("Running")} == {runner.name}
        urls = " ".join(shlex.quote(f"http://{n.ip}:{MESH_PORT}/") for n in spec.nodes)
        bodies: list[str] = []
        for _ in range(10):  # the mesh's IPVS entries follow the task within a few seconds
            bodies = first_manager.check_output(f"{HTTP_GET} {urls}").splitlines()
            if all(b.startswith("task-") for b in bodies):
                break
            time.sleep(2)
        failed = [f"{n.name} ({n.ip}): {b}" for n, b in zip(spec.nodes, bodies, strict=False)
                  if not b.startswith("task-")]
        assert not failed and len(bodies) == len(spec.nodes), (
            f"port {MESH_PORT}, published by one task on {runner.name}, does not answer through the "
            f"routing mesh on: {'; '.join(failed) or bodies}"
        )
        assert len(set(bodies)) == 1, f"one task, several answers: {bodies}"
        for node in spec.nodes:
            servers = _ipvs_real_servers(hosts[node.name])
            assert servers >= 1, (
                f"{node.name}: no IPVS real server in the ingress sandbox for the published port "
                f"(nsenter --net={INGRESS_NETNS} cat /proc/net/ip_vs)"
            )
    finally:
        _remove(first_manager, hosts, spec, MESH)


def test_vip_balances_over_tasks_on_two_nodes(spec, hosts, first_manager, workloads):
    """A replicated service with a virtual IP on the overlay: its name resolves to one VIP, and
    requests from a container on the first node reach the tasks on both nodes."""
    swarm_workloads = workloads.swarm
    swarm_workloads.need("overlay")
    require_kernel(hosts[spec.nodes[0].name], "ip_vs")
    net = swarm_workloads.nets[0]
    a, b = spec.nodes[0], spec.nodes[1]
    others = [n.name for n in spec.nodes if n.name not in (a.name, b.name)]
    place = "".join(f" --constraint node.hostname!={shlex.quote(o)}" for o in others)
    _service(first_manager, VIP, f"--replicas 2 --replicas-max-per-node 1{place} "
                                 f"--network {shlex.quote(net)} --endpoint-mode vip")
    try:
        tasks = _wait_running(first_manager, VIP, 2)
        assert {t["Node"] for t in tasks if t["CurrentState"].startswith("Running")} == {a.name, b.name}
        svc = json.loads(first_manager.check_output(f"docker service inspect {VIP} --format '{{{{json .Endpoint}}}}'"))
        vips = {v["Addr"].split("/")[0] for v in svc.get("VirtualIPs") or []}
        client = hosts[a.name]
        answers: set[str] = set()
        resolved = ""
        for _ in range(6):  # bounded: a broken lab fails this in about a minute
            resolved = client.run(f"docker exec {PROBE_CONTAINERS['a']} nslookup {VIP}").stdout
            got = client.run(
                f"docker exec {PROBE_CONTAINERS['a']} sh -c "
                + shlex.quote(f"for i in $(seq 8); do wget -qO- -T 2 http://{VIP}/; done"))
            answers |= {line.strip() for line in got.stdout.splitlines() if line.startswith("task-")}
            if len(answers) >= 2:
                break
            time.sleep(2)
        assert any(v in resolved for v in vips), f"{VIP} does not resolve to its VIP {sorted(vips)}: {resolved}"
        assert len(answers) == 2, (
            f"requests to {VIP}'s virtual IP from {a.name} reached {len(answers)} of its 2 tasks "
            f"({sorted(answers)}): IPVS does not balance over the overlay to the task on {b.name}"
        )
    finally:
        _remove(first_manager, hosts, spec, VIP)


def _lab_nic(snap, ip: str) -> str:
    for entry in json.loads(snap.check_output(shared.ADDRESSES)):
        if any(a.get("local") == ip for a in entry.get("addr_info", [])):
            return entry["ifname"]
    pytest.fail(f"no interface holds the lab address {ip}")


def test_encrypted_overlay_is_esp_on_the_wire(spec, hosts, snapshots, workloads):
    """Pings across each encrypted overlay: the receiving node sees ESP packets from the sender
    on its lab interface and no VXLAN frame carrying that overlay's packets in the clear; both
    nodes hold IPsec SAs between their lab addresses."""
    swarm_workloads = workloads.swarm
    swarm_workloads.need("overlay")
    a, b = spec.nodes[0], spec.nodes[1]
    encrypted = [o for o in spec.swarm.overlays if o.encrypted and o.name in swarm_workloads.nets]
    if not encrypted:
        pytest.skip("no attachable encrypted overlay in the spec")
    require_kernel(hosts[a.name], "esp4")
    nic = _lab_nic(snapshots[b.name], b.ip)
    for overlay in encrypted:
        ip_b = _overlay_ip(hosts[b.name], PROBE_CONTAINERS["b"], overlay.name)
        reached = _ping(hosts[a.name], PROBE_CONTAINERS["a"], ip_b)  # peers converge first
        script = wire.capture_script(nic, a.ip, b.ip, str(overlay.subnet), spec.swarm.data_path_port, 8)
        out: dict[str, str] = {}

        def listen(command: str = script, into: dict[str, str] = out) -> None:
            into["text"] = hosts[b.name].check_output(command)

        capture = threading.Thread(target=listen)
        capture.start()
        time.sleep(2)
        pinged = hosts[a.name].run(f"docker exec {PROBE_CONTAINERS['a']} ping -c 5 -i 0.5 -W 2 {ip_b}")
        capture.join()
        counts = wire.parse_counts(out.get("text", ""))
        assert counts["plain"] == 0, (
            f"{counts['plain']} VXLAN frames carried {overlay.name}'s packets ({overlay.subnet}) in the "
            f"clear between {a.ip} and {b.ip}: the overlay is not encrypted on the wire"
        )
        assert counts["esp"] >= 5, (
            f"pinging {ip_b} on the encrypted overlay {overlay.name}: {counts['esp']} ESP packets "
            f"between {a.ip} and {b.ip} on {b.name}'s {nic} (want >= 5)"
        )
        assert reached and pinged.rc == 0, f"{a.name} cannot reach {ip_b} on {overlay.name}"
    for x, y in ((a, b), (b, a)):
        sas = hosts[x.name].check_output("ip xfrm state")
        assert f"src {x.ip} dst {y.ip}" in sas and "proto esp" in sas, (
            f"{x.name} has no IPsec SA (ip xfrm state) from {x.ip} to {y.ip}"
        )
