"""Swarm: membership, roles, ports, gwbridge/ingress, overlay data path, dnsrr, stacks."""

from __future__ import annotations

import json
import shlex
import time

import pytest
from pyinfra.facts.docker import DockerNetworks

from swarmlab.model.spec import duration_seconds
from swarmlab.model.swarm_state import INFO_COMMAND, SwarmState, parse_info
from swarmlab.provision.facts import OverlayNetworks
from swarmlab.verify import expected
from swarmlab.verify import snapshot as shared
from swarmlab.verify.conftest import require_kernel
from swarmlab.verify.rules import masquerades, parse_rules
from swarmlab.verify.workloads import DNSRR, NO_SWARM, PROBE_CONTAINERS, SECRET, STACK, SwarmWorkloads


def require_swarm(spec) -> None:
    """A lab with `swarm.enabled: false` has no swarm: its swarm checks skip with the reason."""
    if not spec.swarm.enabled:
        pytest.skip(NO_SWARM)


@pytest.fixture(autouse=True)
def _swarm_enabled(spec):
    """Every check in this module needs the swarm."""
    require_swarm(spec)


def _swarm(snap) -> SwarmState:
    """The node's swarm state (swarmlab/model/swarm_state.py) from its snapshot's `docker info`."""
    return parse_info(snap.check_output(INFO_COMMAND))


def _nodes(host) -> list[dict]:
    out = host.check_output("docker node ls -q | xargs docker node inspect --format '{{json .}}'")
    return [json.loads(line) for line in out.splitlines()]


def test_swarm_active_in_the_labs_cluster(snap, node, spec):
    info = _swarm(snap)
    assert info.active, f"{node.name}: swarm state {info.local_node_state!r} {info.error}".rstrip()
    assert info.in_swarm_of(spec.first_manager.ip), (
        f"{node.name} is in another swarm: {list(info.remote_managers)}"
    )
    assert info.node_addr == node.ip, f"advertised {info.node_addr}, want the lab IP {node.ip}"


def test_managers_share_one_cluster_id(spec, snapshots):
    if len(spec.managers) < 2:
        pytest.skip("one manager in the spec: no other manager to share a cluster with")
    ids = {m.name: _swarm(snapshots[m.name]).cluster_id for m in spec.managers}
    assert len(set(ids.values())) == 1 and all(ids.values()), ids


def test_manager_sees_every_spec_node_ready_with_its_role(spec, first_manager):
    nodes = {n["Description"]["Hostname"]: n for n in _nodes(first_manager)
             if n["Status"]["State"] == "ready"}
    for node in spec.nodes:
        assert node.name in nodes, f"{node.name} is not Ready in the swarm ({sorted(nodes)})"
        seen = nodes[node.name]
        assert seen["Spec"]["Role"] == node.role, f"{node.name} role {seen['Spec']['Role']}"
        assert seen["Status"]["Addr"] == node.ip
        labels = seen["Spec"].get("Labels") or {}
        wrong = expected.label_differences(labels, node)
        assert not wrong, f"{node.name}'s labels {labels} are not the spec's {node.labels}: {wrong}"


def test_managers_reachable(spec, first_manager):
    if len(spec.managers) < 2:
        pytest.skip("one manager in the spec: no manager reachability to check")
    for n in _nodes(first_manager):
        if n["Spec"]["Role"] == "manager":
            assert n["ManagerStatus"]["Reachability"] == "reachable", n["Description"]["Hostname"]


def test_cluster_port_listening_on_managers(hosts, manager):
    assert hosts[manager.name].socket(f"tcp://{manager.ip}:2377").is_listening


def test_gossip_ports_listening(host, node):
    assert host.socket(f"tcp://{node.ip}:7946").is_listening, "7946/tcp not listening on the lab IP"
    assert host.socket(f"udp://{node.ip}:7946").is_listening, "7946/udp not bound on the lab IP"




def test_docker_gwbridge_with_masquerade(host, snap):
    subnet = json.loads(snap.check_output(shared.GWBRIDGE_IPAM))[0]["Subnet"]
    assert host.file("/sys/class/net/docker_gwbridge/bridge").is_directory, "docker_gwbridge is no bridge"
    assert masquerades(parse_rules(snap.lines(shared.NAT_RULES)), subnet, "docker_gwbridge"), (
        f"no MASQUERADE for docker_gwbridge's {subnet}: swarm tasks cannot reach beyond the node"
    )


def _overlays(manager) -> dict[str, dict]:
    """The deploy's own read: pyinfra's DockerNetworks command, filtered as OverlayNetworks does."""
    networks = DockerNetworks()
    return OverlayNetworks().process_data(networks.process(manager.check_output(networks.command()).splitlines()))


def test_ingress_network_exists(first_manager):
    nets = _overlays(first_manager)
    assert any(n.get("Ingress") for n in nets.values()), (
        f"no ingress network among the overlays {sorted(nets)}: published service ports have no "
        "routing mesh"
    )


def test_spec_overlays_exist(spec, first_manager):
    nets = _overlays(first_manager)
    for net in spec.swarm.overlays:
        assert net.name in nets, f"overlay {net.name} does not exist (have {sorted(nets)})"
        wrong = expected.overlay_differences(nets[net.name], net)
        assert not wrong, f"overlay {net.name} differs from the spec: {'; '.join(wrong)}"


@pytest.fixture(scope="module")
def swarm_workloads(workloads) -> SwarmWorkloads:
    return workloads.swarm


@pytest.fixture
def overlay_pair(spec, swarm_workloads):
    """Probe containers a and b on two nodes, on every attachable spec overlay."""
    swarm_workloads.need("overlay")
    return spec.nodes[0], spec.nodes[1], swarm_workloads.nets


def _ping(host, container: str, target: str) -> bool:
    for _ in range(10):  # overlay peers and DNS take a moment to converge
        if host.run(f"docker exec {container} ping -c 1 -W 2 {target}").succeeded:
            return True
        time.sleep(1)
    return False


def _overlay_ip(host, container: str, net: str) -> str:
    nets = host.docker(container).inspect()["NetworkSettings"]["Networks"] or {}
    return (nets.get(net) or {}).get("IPAddress", "")


def test_vxlan_port_bound_where_overlays_run(spec, hosts, overlay_pair):
    """The kernel's VXLAN socket exists while an overlay is in use on the node (not before)."""
    a, b, _ = overlay_pair
    port = spec.swarm.data_path_port
    for n in (a, b):
        assert hosts[n.name].socket(f"udp://0.0.0.0:{port}").is_listening, (
            f"{n.name} has containers on an overlay but no VXLAN socket on udp/{port}"
        )


def test_overlay_traffic_across_nodes_by_ip_and_name(spec, hosts, overlay_pair):
    a, b, nets = overlay_pair
    plain = [n for n in nets if not spec.swarm.overlays[[o.name for o in spec.swarm.overlays].index(n)].encrypted]
    if not plain:
        pytest.skip("every attachable overlay in the spec is encrypted (checked separately)")
    for net in plain:
        ip_b = _overlay_ip(hosts[b.name], PROBE_CONTAINERS["b"], net)
        assert _ping(hosts[a.name], PROBE_CONTAINERS["a"], ip_b), f"{a.name} cannot reach {ip_b} on {net}"
    assert _ping(hosts[a.name], PROBE_CONTAINERS["a"], PROBE_CONTAINERS["b"]), "name resolution over overlay"


def test_encrypted_overlay_traffic_across_nodes(spec, hosts, overlay_pair):
    a, b, nets = overlay_pair
    encrypted = [o.name for o in spec.swarm.overlays if o.encrypted and o.name in nets]
    if not encrypted:
        pytest.skip("no attachable encrypted overlay in the spec")
    require_kernel(hosts[a.name], "esp4")
    for net in encrypted:
        ip_b = _overlay_ip(hosts[b.name], PROBE_CONTAINERS["b"], net)
        assert _ping(hosts[a.name], PROBE_CONTAINERS["a"], ip_b), f"{a.name} cannot reach {ip_b} on {net}"


def _wait_running(manager, service: str, want: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    tasks: list[dict] = []
    while time.monotonic() < deadline:
        out = manager.check_output(
            f"docker service ps {service} --filter desired-state=running --format '{{{{json .}}}}'"
        )
        tasks = [json.loads(line) for line in out.splitlines() if line]
        if sum(t["CurrentState"].startswith("Running") for t in tasks) >= want:
            return tasks
        time.sleep(1)
    pytest.fail(f"service {service}: {want} tasks not running after {timeout}s: {tasks}")


# one python3 on the node fetches every URL given as an argument: one line per URL
HTTP_GET = (
    "python3 -c \"import sys,urllib.request\n"
    "for u in sys.argv[1:]:\n"
    "    try: print(urllib.request.urlopen(u, timeout=5).read().decode().strip())\n"
    "    except OSError as e: print('ERROR', u, e)\""
)


def test_host_mode_port_with_dnsrr_service(spec, hosts, first_manager, swarm_workloads):
    """Without IPVS this is how a service is reached: host-mode ports and DNS round robin.

    A global service puts a task on every node: each node serves its host-mode port, and the
    embedded DNS on the first node answers with every task's address (learnt by gossip).
    """
    swarm_workloads.need("dnsrr")
    nets = swarm_workloads.nets
    replicas = len(spec.nodes)
    tasks = _wait_running(first_manager, DNSRR, replicas)
    task_nodes = {t["Node"] for t in tasks if t["CurrentState"].startswith("Running")}
    assert task_nodes == {n.name for n in spec.nodes}, f"global service tasks on {sorted(task_nodes)}"
    urls = " ".join(shlex.quote(f"http://{node.ip}:18081/") for node in spec.nodes)
    bodies = first_manager.check_output(f"{HTTP_GET} {urls}").splitlines()
    assert len(bodies) == replicas and all(b.startswith("dnsrr-") for b in bodies), bodies
    a = spec.nodes[0]
    want = _task_addresses(first_manager, tasks, nets[0])
    answers: list[str] = []
    for _ in range(15):  # the embedded DNS learns remote tasks by gossip
        out = hosts[a.name].run(f"docker exec {PROBE_CONTAINERS['dns']} nslookup {DNSRR}")
        answers = nslookup_answers(out.stdout)
        if set(answers) == want:
            break
        time.sleep(1)
    assert set(answers) == want and len(want) == replicas, (
        f"DNS round robin for {DNSRR} answered {answers}; its {replicas} running tasks are {sorted(want)}"
    )


def nslookup_answers(output: str) -> list[str]:
    """The addresses busybox/nslookup gives for the name (the server's own Address line,
    printed before the first `Name:`, is not an answer)."""
    answers, in_answer = [], False
    for line in output.splitlines():
        if line.startswith("Name:"):
            in_answer = True
        elif in_answer and line.startswith("Address"):
            answers.append(line.split(":", 1)[1].strip().split()[0].split("#")[0])
    return answers


def _task_addresses(manager, tasks: list[dict], net: str) -> set[str]:
    """The overlay addresses of the service's running tasks on `net` (one inspect for all)."""
    ids = [t["ID"] for t in tasks if t["CurrentState"].startswith("Running")]
    if not ids:
        return set()
    out = set()
    for line in manager.check_output(f"docker inspect --format '{{{{json .}}}}' {' '.join(ids)}").splitlines():
        for att in json.loads(line).get("NetworksAttachments") or []:
            if att["Network"]["Spec"]["Name"] == net:
                out.update(a.split("/")[0] for a in att.get("Addresses") or [])
    return out


def test_stack_deploy_with_secret(first_manager, hosts, swarm_workloads):
    swarm_workloads.need("stack")
    tasks = _wait_running(first_manager, f"{STACK}_web", 1)
    runner = hosts[tasks[0]["Node"]]
    cid = runner.check_output(
        f"docker ps -q --filter label=com.docker.swarm.service.name={STACK}_web"
    ).split()[0]
    assert runner.check_output(f"docker exec {cid} cat /run/secrets/probe_secret") == SECRET


# --- spec fields without a check before: the cluster's options ---

NS = 1_000_000_000


def cluster_option_problems(spec, cluster: dict) -> list[str]:
    """How `docker info`'s Swarm.Cluster differs from the spec's swarm options (own reading of
    the spec: a field left out of the spec is Docker's to choose)."""
    sw, have = spec.swarm, cluster.get("Spec") or {}
    out = []
    locked = bool((have.get("EncryptionConfig") or {}).get("AutoLockManagers"))
    if locked != sw.autolock:
        out.append(f"autolock is {locked}, swarm.autolock is {sw.autolock}")
    for field, value, section, key in (
            ("cert_expiry", sw.cert_expiry, "CAConfig", "NodeCertExpiry"),
            ("dispatcher_heartbeat", sw.dispatcher_heartbeat, "Dispatcher", "HeartbeatPeriod")):
        if value is not None:
            got = (have.get(section) or {}).get(key)
            if got != duration_seconds(value) * NS:
                out.append(f"{key} is {got} ns, swarm.{field} is {value}")
    if sw.task_history_limit is not None:
        got = (have.get("Orchestration") or {}).get("TaskHistoryRetentionLimit")
        if got != sw.task_history_limit:
            out.append(f"TaskHistoryRetentionLimit is {got}, swarm.task_history_limit is "
                       f"{sw.task_history_limit}")
    if sw.default_addr_pool:
        pools, size = cluster.get("DefaultAddrPool"), cluster.get("SubnetSize")
        if pools != list(sw.default_addr_pool) or size != sw.default_addr_pool_mask_length:
            out.append(f"address pool {pools} /{size}, the spec's {sw.default_addr_pool} "
                       f"/{sw.default_addr_pool_mask_length}")
    return out


def test_swarm_cluster_options_are_the_specs(spec, first_manager):
    """swarm.autolock, cert_expiry, dispatcher_heartbeat, task_history_limit, default_addr_pool
    and its mask length, as the first manager's cluster holds them."""
    if not spec.swarm.enabled:
        pytest.skip("swarm.enabled is false")
    out = first_manager.run("docker info --format '{{json .Swarm.Cluster}}'")
    assert out.succeeded, f"docker info failed: {out.stderr.strip()}"
    cluster = json.loads(out.stdout or "null")
    assert cluster, "the first manager holds no cluster (not a manager, or locked)"
    problems = cluster_option_problems(spec, cluster)
    assert not problems, "; ".join(problems)
