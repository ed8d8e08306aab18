"""Swarm command builders and the swarm deploy (swarmlab/provision/swarm.py), offline."""

from __future__ import annotations

import json
import logging

import pytest
from deployfakes import LOCAL, VMLAB, recorded, run_deploy, spec_file
from pyinfra.facts.server import Command

from swarmlab.model.spec import OverlaySpec, load_spec
from swarmlab.model.swarm_state import from_swarm
from swarmlab.provision.facts import OverlayNetworks, SwarmInfo, SwarmNodes
from swarmlab.provision.swarm import (
    MANAGED_LABELS,
    form_swarm,
    init_command,
    label_update_args,
    overlay_command,
    overlay_drift,
    reconcile_commands,
)

TOKEN = "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx"

# `docker info --format '{{json .Swarm}}'`
INFO_INACTIVE = ('{"NodeID":"","NodeAddr":"","LocalNodeState":"inactive","ControlAvailable":false,'
                 '"Error":"","RemoteManagers":null}')
INFO_WORKER_OF_NODE1 = ('{"NodeID":"k2m3e9x8c7v6b5n4m3q2w1e0r","NodeAddr":"10.77.0.12",'
                        '"LocalNodeState":"active","ControlAvailable":false,"Error":"",'
                        '"RemoteManagers":[{"NodeID":"p0o9i8u7y6t5r4e3w2q1a2s3d",'
                        '"Addr":"10.77.0.11:2377"}]}')
INFO_OTHER_SWARM = INFO_WORKER_OF_NODE1.replace("10.77.0.11:2377", "172.30.0.5:2377")


def node(nid: str, hostname: str, role: str, state: str = "ready", labels: dict | None = None,
         addr: str = "10.77.0.11") -> dict:
    """One `docker node inspect --format '{{json .}}'` record (the fields swarmlab reads)."""
    return {
        "ID": nid,
        "Version": {"Index": 42},
        "Spec": {"Labels": labels or {}, "Role": role, "Availability": "active"},
        "Description": {"Hostname": hostname, "Platform": {"Architecture": "x86_64", "OS": "linux"}},
        "Status": {"State": state, "Addr": addr},
    }


def converged() -> list[dict]:
    """labs/local.yaml as the swarm sees it when it matches the spec."""
    return [
        node("aaa111", "node1", "manager", labels={"zone": "a", MANAGED_LABELS: "zone"}),
        node("bbb222", "node2", "worker", labels={"zone": "b", MANAGED_LABELS: "zone"}, addr="10.77.0.12"),
        node("ccc333", "node3", "worker", labels={"zone": "b", MANAGED_LABELS: "zone"}, addr="10.77.0.13"),
    ]


def inspect_output(nodes: list[dict]) -> str:
    return "\n".join(json.dumps(n) for n in nodes) + "\n"


# --- init_command / overlay_command / in_swarm_of -----------------------------------------

def test_init_command_plain(tmp_path):
    spec = load_spec(spec_file(tmp_path, swarm={"default_addr_pool": [], "overlays": []}))
    assert init_command(spec, "10.77.0.11") == (
        "docker swarm init --advertise-addr 10.77.0.11 --listen-addr 10.77.0.11:2377"
    )


def test_init_command_with_data_path_port_and_address_pools(tmp_path):
    spec = load_spec(spec_file(tmp_path, swarm={
        "data_path_port": 4800,
        "default_addr_pool": ["10.20.0.0/16", "10.21.0.0/16"],
        "default_addr_pool_mask_length": 26,
    }))
    assert init_command(spec, "10.77.0.11") == (
        "docker swarm init --advertise-addr 10.77.0.11 --listen-addr 10.77.0.11:2377"
        " --data-path-port 4800"
        " --default-addr-pool 10.20.0.0/16 --default-addr-pool 10.21.0.0/16"
        " --default-addr-pool-mask-length 26"
    )


def test_init_command_from_the_shipped_spec():
    cmd = init_command(load_spec(LOCAL), "10.77.0.11")
    assert "--data-path-port" not in cmd  # 4789 is Docker's default
    assert cmd.endswith("--default-addr-pool 10.20.0.0/16 --default-addr-pool-mask-length 24")


def test_overlay_command_variants():
    assert overlay_command(OverlaySpec(name="labnet", subnet="10.30.0.0/24")) == (
        "docker network create --driver overlay --subnet 10.30.0.0/24 --attachable labnet"
    )
    assert overlay_command(OverlaySpec(name="secure", encrypted=True, attachable=False)) == (
        "docker network create --driver overlay --opt encrypted secure"
    )
    labelled = OverlaySpec(name="web", labels={"tier": "front", "env": "lab"})
    assert overlay_command(labelled) == (
        "docker network create --driver overlay --attachable --label env=lab --label tier=front web"
    )


def test_in_swarm_of_reads_the_deploy_fact_with_the_shared_parser():
    worker = recorded(SwarmInfo, INFO_WORKER_OF_NODE1)
    assert from_swarm(worker).in_swarm_of("10.77.0.11")
    assert not from_swarm(worker).in_swarm_of("10.77.0.99")
    assert not from_swarm(recorded(SwarmInfo, INFO_INACTIVE)).in_swarm_of("10.77.0.11")
    assert not from_swarm({}).in_swarm_of("10.77.0.11")  # docker not running
    pending = dict(worker, LocalNodeState="pending")
    assert not from_swarm(pending).in_swarm_of("10.77.0.11")


# --- reconcile_commands -------------------------------------------------------------------

def test_converged_cluster_needs_no_commands():
    assert reconcile_commands(load_spec(LOCAL), converged()) == []


def test_down_node_not_in_the_spec_is_removed():
    nodes = [*converged(), node("ddd444", "node4", "worker", state="down")]
    assert reconcile_commands(load_spec(LOCAL), nodes) == ["docker node rm --force ddd444"]


def test_down_manager_not_in_the_spec_is_demoted_first():
    nodes = [*converged(), node("eee555", "old-manager", "manager", state="down")]
    assert reconcile_commands(load_spec(LOCAL), nodes) == [
        "docker node demote eee555", "docker node rm --force eee555",
    ]


def test_down_duplicate_of_a_ready_node_is_removed():
    # node2 was recreated: its old swarm identity is Down, the new one Ready
    nodes = [*converged(), node("old222", "node2", "worker", state="down",
                                labels={"zone": "b"})]
    assert reconcile_commands(load_spec(LOCAL), nodes) == ["docker node rm --force old222"]


def test_down_spec_node_without_a_ready_twin_is_kept():
    nodes = converged()
    nodes[2]["Status"]["State"] = "down"  # node3 is just off
    assert reconcile_commands(load_spec(LOCAL), nodes) == []


def test_roles_follow_the_spec():
    nodes = converged()
    nodes[0]["Spec"]["Role"] = "worker"  # node1 should be a manager
    nodes[1]["Spec"]["Role"] = "manager"  # node2 should be a worker
    assert reconcile_commands(load_spec(LOCAL), nodes) == [
        "docker node promote aaa111", "docker node demote bbb222",
    ]


def test_missing_or_different_labels_are_added():
    nodes = converged()
    nodes[1]["Spec"]["Labels"] = {}
    nodes[2]["Spec"]["Labels"] = {"zone": "a", "extra": "kept", MANAGED_LABELS: "zone"}
    assert reconcile_commands(load_spec(LOCAL), nodes) == [
        "docker node update --label-add zone=b --label-add swarmlab.labels=zone bbb222",
        "docker node update --label-add zone=b ccc333",
    ]


def test_labels_dropped_from_the_spec_are_removed_hand_made_ones_stay():
    assert label_update_args({"zone": "a"}, {"zone": "a", "rack": "1", "mine": "x",
                                             MANAGED_LABELS: "rack,zone"}) == [
        "--label-rm", "rack", "--label-add", "swarmlab.labels=zone"]
    assert label_update_args({}, {"zone": "a", MANAGED_LABELS: "zone"}) == [
        "--label-rm", "zone", "--label-rm", "swarmlab.labels"]
    assert label_update_args({}, {"mine": "x"}) == []


def test_labels_none_in_inspect_output():
    nodes = converged()
    nodes[0]["Spec"]["Labels"] = None
    assert reconcile_commands(load_spec(LOCAL), nodes) == [
        "docker node update --label-add zone=a --label-add swarmlab.labels=zone aaa111",
    ]


# --- the deploy ---------------------------------------------------------------------------

def test_first_manager_inits_and_creates_the_overlays():
    run = run_deploy(form_swarm, LOCAL, "node1", {SwarmInfo: recorded(SwarmInfo, INFO_INACTIVE)})
    assert not run.failed
    assert run.op("swarm init (first manager)").commands == [
        init_command(load_spec(LOCAL), "10.77.0.11")]
    assert run.op("swarm join").commands == []
    assert run.op("swarm members match the spec").commands == []
    assert run.op("overlay network labnet").commands == [
        "docker network create --driver overlay --subnet 10.30.0.0/24 --attachable labnet"]
    assert run.op("overlay network secure").commands == [
        "docker network create --driver overlay --subnet 10.31.0.0/24 --opt encrypted "
        "--attachable secure"]


def test_first_manager_in_a_stale_state_leaves_before_init():
    stale = INFO_INACTIVE.replace('"inactive"', '"error"')
    run = run_deploy(form_swarm, LOCAL, "node1", {SwarmInfo: recorded(SwarmInfo, stale)})
    init = run.op("swarm init (first manager)").commands
    assert init[0] == "docker swarm leave --force"
    assert init[1].startswith("docker swarm init ")


def test_active_first_manager_reconciles_and_keeps_existing_overlays():
    nets = {
        "labnet": {"Name": "labnet", "Attachable": True, "Options": {},
                   "IPAM": {"Config": [{"Subnet": "10.30.0.0/24"}]}},
        "secure": {"Name": "secure", "Attachable": True, "Options": {"encrypted": ""},
                   "IPAM": {"Config": [{"Subnet": "10.31.0.0/24"}]}},
    }
    nodes = converged()
    nodes[2]["Spec"]["Labels"] = {}
    run = run_deploy(form_swarm, LOCAL, "node1", {
        SwarmInfo: recorded(SwarmInfo, INFO_WORKER_OF_NODE1.replace('"ControlAvailable":false',
                                                                     '"ControlAvailable":true')),
        SwarmNodes: recorded(SwarmNodes, inspect_output(nodes)),
        OverlayNetworks: nets,
    })
    assert run.op("swarm init (first manager)").commands == []
    assert run.op("swarm members match the spec").commands == [
        "docker node update --label-add zone=b --label-add swarmlab.labels=zone ccc333"]
    assert run.op("overlay network labnet").commands == []
    assert run.op("overlay network secure").commands == []
    assert not any("differs from the spec" in w for w in run.warnings)


def test_overlay_with_other_settings_is_recreated():
    nets = {"secure": {"Name": "secure", "Attachable": True, "Options": {},
                       "IPAM": {"Config": [{"Subnet": "10.31.0.0/24"}]}},
            "labnet": {"Name": "labnet", "Attachable": True, "Options": {},
                       "IPAM": {"Config": [{"Subnet": "10.30.0.0/24"}]}}}
    run = run_deploy(form_swarm, LOCAL, "node1", {
        SwarmInfo: recorded(SwarmInfo, INFO_WORKER_OF_NODE1), OverlayNetworks: nets})
    assert run.op("overlay network secure").commands == [
        "docker network rm secure",
        "docker network create --driver overlay --subnet 10.31.0.0/24 --opt encrypted --attachable secure",
    ]
    assert run.op("overlay network labnet").commands == []
    warnings = {w for w in run.warnings if "differs from the spec" in w}
    assert len(warnings) == 1
    (warning,) = warnings
    assert "overlay secure" in warning and "encrypted=False, spec True" in warning




INGRESS = {"Name": "ingress", "Ingress": True, "Options": {},
           "IPAM": {"Config": [{"Subnet": "10.0.0.0/24"}]}}


@pytest.mark.parametrize(("hardened", "esp", "want"), [
    (False, "loaded", []),  # the lab profile leaves the ingress as Docker made it
    (True, "missing", []),  # hardened, but no ESP to encrypt with (a container lab here)
    (True, "loadable", [
        "printf 'y\\n' | docker network rm ingress",
        "docker network create --driver overlay --ingress --subnet 10.0.0.0/24 --opt encrypted ingress"]),
])
def test_hardened_ingress_is_encrypted_where_the_kernel_has_esp(hardened, esp, want):
    from swarmlab.provision.facts import KernelModules
    from swarmlab.provision.swarm import ingress_network

    def ingress() -> None:
        ingress_network(name="ingress network", is_first=True, hardened=hardened)

    for have, expected in ((INGRESS, want), ({**INGRESS, "Options": {"encrypted": ""}}, [])):
        run = run_deploy(ingress, LOCAL, "node1", {OverlayNetworks: {"ingress": have},
                                                   KernelModules: {"esp4": esp}})
        assert run.op("ingress network").commands == expected
    gone = run_deploy(ingress, LOCAL, "node1", {OverlayNetworks: {}, KernelModules: {"esp4": esp}})
    assert gone.op("ingress network").commands == [
        "docker network create --driver overlay --ingress" + (" --opt encrypted" if want else "") + " ingress"]

def test_overlay_drift_names_each_difference():
    net = {"Attachable": False, "Options": {}, "Labels": {"a": "1"},
           "IPAM": {"Config": [{"Subnet": "10.9.0.0/24"}]}}
    assert overlay_drift(net, "10.30.0.0/24", True, True, {"purpose": "test"}) == [
        "subnet ['10.9.0.0/24'], spec 10.30.0.0/24", "encrypted=False, spec True",
        "attachable=False, spec True", "labels {'a': '1'}, spec {'purpose': 'test'}",
    ]
    same = {"Attachable": True, "Options": {"encrypted": ""}, "Labels": None,
            "IPAM": {"Config": [{"Subnet": "10.30.0.0/24"}]}}
    assert overlay_drift(same, "10.30.0.0/24", True, True, {}) == []


def join_run(info: str = INFO_INACTIVE, node_name: str = "node2", spec=LOCAL):
    return run_deploy(form_swarm, spec, node_name, {SwarmInfo: recorded(SwarmInfo, info)},
                      peers={"node1": {(Command, "docker swarm join-token -q worker"): TOKEN + "\n",
                                       (Command, "docker swarm join-token -q manager"):
                                           "SWMTKN-1-manager-token\n"}})


def test_worker_joins_with_the_token_read_from_the_first_manager():
    run = join_run()
    assert not run.failed
    (raw,) = run.op("swarm join").raw_commands
    assert raw == (f"docker swarm join --token {TOKEN} --advertise-addr 10.77.0.12 "
                   "--listen-addr 10.77.0.12:2377 10.77.0.11:2377")
    # first-manager-only operations do nothing here
    assert run.op("swarm init (first manager)").commands == []
    assert run.op("swarm members match the spec").commands == []
    assert run.op("overlay network labnet").commands == []


def test_join_token_never_appears_in_printed_or_logged_commands():
    run = join_run()
    (printed,) = run.op("swarm join").commands
    assert TOKEN not in printed
    assert "--token *MASKED*" in printed
    assert printed.endswith("10.77.0.11:2377")
    assert not any(TOKEN in message for _, message in run.logs)
    assert not any(TOKEN in c for c in run.commands)


def test_manager_joins_with_the_manager_token(tmp_path):
    spec = spec_file(tmp_path, nodes=[
        {"name": "node1", "distro": "debian-13", "ip": "10.77.0.11", "role": "manager"},
        {"name": "node2", "distro": "debian-13", "ip": "10.77.0.12", "role": "manager"},
        {"name": "node3", "distro": "debian-13", "ip": "10.77.0.13", "role": "manager"},
    ])
    (raw,) = join_run(spec=spec).op("swarm join").raw_commands
    assert "--token SWMTKN-1-manager-token " in raw


def test_joined_worker_does_nothing():
    run = join_run(INFO_WORKER_OF_NODE1)
    assert run.commands == []


def test_worker_of_another_swarm_leaves_then_joins():
    run = join_run(INFO_OTHER_SWARM)
    cmds = run.op("swarm join").commands
    assert cmds[0] == "docker swarm leave --force"
    assert cmds[1].startswith("docker swarm join --token *MASKED* ")
    assert any("172.30.0.5:2377" in w for w in run.messages(logging.WARNING))


def test_prepare_phase_shows_a_placeholder_not_a_token():
    run = run_deploy(form_swarm, LOCAL, "node3", {SwarmInfo: recorded(SwarmInfo, INFO_INACTIVE)},
                     execute=False)
    assert run.op("swarm join").commands == [
        "docker swarm join --token <read from node1 at run time> 10.77.0.11"]


@pytest.mark.parametrize("spec", [VMLAB, LOCAL])
def test_swarm_disabled_declares_nothing(tmp_path, spec):
    path = spec_file(tmp_path, base=spec, distros=[n.distro for n in load_spec(spec).nodes],
                     swarm={"enabled": False})
    assert run_deploy(form_swarm, path, "node1").ops == []
