"""swarmlab.model.swarm_state: the one parser of a node's swarm state in `docker info` JSON."""

from __future__ import annotations

import json

import pytest

from swarmlab.model.swarm_state import SwarmState, from_swarm, parse_info

MANAGER_SWARM = {
    "NodeID": "abc123", "NodeAddr": "10.77.0.11", "LocalNodeState": "active",
    "ControlAvailable": True, "Error": "",
    "RemoteManagers": [{"NodeID": "abc123", "Addr": "10.77.0.11:2377"}],
    "Nodes": 3, "Managers": 1,
    "Cluster": {"ID": "clu5t3r", "Spec": {"Name": "default"}},
}
WORKER_SWARM = {
    "NodeID": "w0rk3r", "NodeAddr": "10.77.0.12", "LocalNodeState": "active",
    "ControlAvailable": False, "Error": "",
    "RemoteManagers": [{"NodeID": "abc123", "Addr": "10.77.0.11:2377"}],
}


def test_whole_info_and_swarm_part_parse_the_same():
    whole = parse_info(json.dumps({"ServerVersion": "26.1.5", "Swarm": MANAGER_SWARM}))
    part = parse_info(json.dumps(MANAGER_SWARM))
    assert whole == part
    assert whole.active and whole.control_available
    assert (whole.node_id, whole.node_addr, whole.cluster_id) == ("abc123", "10.77.0.11", "clu5t3r")
    assert (whole.managers, whole.nodes) == (1, 3)
    assert whole.remote_managers == ("10.77.0.11:2377",)


def test_worker_has_no_cluster_and_no_control():
    state = from_swarm(WORKER_SWARM)
    assert state.active and not state.control_available
    assert state.cluster_id == "" and state.managers == 0
    assert state.in_swarm_of("10.77.0.11")
    assert not state.in_swarm_of("10.77.0.99"), "another manager's swarm"


@pytest.mark.parametrize("node_state", ["inactive", "pending", "locked", "error"])
def test_not_active_is_in_no_swarm(node_state):
    state = from_swarm(dict(WORKER_SWARM, LocalNodeState=node_state))
    assert not state.active
    assert not state.in_swarm_of("10.77.0.11")


@pytest.mark.parametrize("text", ["", "Cannot connect to the Docker daemon", "{not json", "[]", "null"])
def test_docker_down_or_garbage_is_an_unknown_state(text):
    state = parse_info(text)
    assert state == SwarmState()
    assert state.local_node_state == "" and not state.active


def test_swarm_null_in_info_is_an_unknown_state():
    assert parse_info(json.dumps({"ServerVersion": "28.0", "Swarm": None})) == SwarmState()


def test_error_is_kept():
    state = from_swarm({"LocalNodeState": "error", "Error": "rpc error: manager unreachable"})
    assert state.error.startswith("rpc error")
