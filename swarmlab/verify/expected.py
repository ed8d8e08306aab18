"""What a lab should hold, computed from the spec by the verification suite itself.

The deploy has its own functions for the same desired state (daemon_config, label_update_args,
overlay_drift, nft_expected_lines); comparing a node with them would hide a wrong desired state
from both. These small pure functions are written apart, tested against literal output
(tests/unit/test_verify_expected.py), and read the spec only.
"""

from __future__ import annotations

from typing import Any

from swarmlab.model.spec import LabSpec, NodeSpec, OverlaySpec

# CIS Docker Benchmark 1.6.0 options the `hardened` profile asks of daemon.json
# (2.2 icc, 2.14 no-new-privileges, 2.16 userland-proxy, 2.9 userns-remap, 2.8 default-ulimits)
HARDENED = {"icc": False, "no-new-privileges": True, "userland-proxy": False, "userns-remap": "default",
            "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 8192, "Soft": 1024}}}
MANAGED_LABELS = "swarmlab.labels"  # the node label listing the keys swarmlab set


def daemon_json(spec: LabSpec) -> dict[str, Any]:
    """/etc/docker/daemon.json: the log settings, live-restore off in a swarm (dockerd refuses
    both), the hardened options, then the spec's own docker.daemon keys (they win)."""
    want: dict[str, Any] = {"log-driver": spec.docker.log_driver}
    if spec.docker.log_opts:
        want["log-opts"] = dict(spec.docker.log_opts)
    if spec.swarm.enabled:
        want["live-restore"] = False
    if spec.security.profile == "hardened":
        want.update(HARDENED)
    want.update(spec.docker.daemon)
    return want


def dict_differences(have: dict, want: dict) -> dict[str, tuple[Any, Any]]:
    """key -> (have, want) for every key whose value differs or is only on one side."""
    return {k: (have.get(k), want.get(k)) for k in sorted(set(have) | set(want))
            if have.get(k) != want.get(k)}


def node_labels(node: NodeSpec) -> dict[str, str]:
    """The labels the node carries in the swarm: the spec's, and the list of their keys."""
    want = dict(node.labels)
    if node.labels:
        want[MANAGED_LABELS] = ",".join(sorted(node.labels))
    return want


def label_differences(have: dict[str, str], node: NodeSpec) -> list[str]:
    """How a node's swarm labels differ from the spec: a spec label absent or other, the key
    list wrong, a label swarmlab set that the spec dropped (labels added by hand may stay)."""
    want = node_labels(node)
    out = [f"{k}={have.get(k)!r}, spec {v!r}" for k, v in sorted(want.items()) if have.get(k) != v]
    if not node.labels and MANAGED_LABELS in have:
        out.append(f"{MANAGED_LABELS}={have[MANAGED_LABELS]!r}, the spec sets no label")
    listed = [k for k in have.get(MANAGED_LABELS, "").split(",") if k]
    out += [f"{k} (set by swarmlab) is no longer in the spec" for k in listed
            if k not in node.labels and k in have]
    return out


def overlay_differences(have: dict, net: OverlaySpec) -> list[str]:
    """How `docker network inspect` of an overlay differs from its spec: driver, scope,
    subnet, encryption, attachable, labels."""
    out = []
    if have.get("Driver") != "overlay":
        out.append(f"driver {have.get('Driver')!r}, want 'overlay'")
    if have.get("Scope") != "swarm":
        out.append(f"scope {have.get('Scope')!r}, want 'swarm'")
    subnets = sorted(c.get("Subnet") for c in (have.get("IPAM") or {}).get("Config") or [] if c.get("Subnet"))
    if net.subnet and subnets != [net.subnet]:
        out.append(f"subnets {subnets}, spec [{net.subnet!r}]")
    encrypted = "encrypted" in (have.get("Options") or {})
    if encrypted != net.encrypted:
        out.append(f"encrypted {encrypted}, spec {net.encrypted}")
    if bool(have.get("Attachable")) != net.attachable:
        out.append(f"attachable {bool(have.get('Attachable'))}, spec {net.attachable}")
    if bool(have.get("Ingress")):
        out.append("it is the ingress network")
    if (have.get("Labels") or {}) != dict(net.labels):
        out.append(f"labels {have.get('Labels') or {}}, spec {dict(net.labels)}")
    return out


def lab_flows(spec: LabSpec) -> list[tuple[str, int | None]]:
    """(proto, port) the firewall lets in from the lab subnet only: the swarm ports, ESP (port
    None) for an encrypted overlay, 2376 with docker.tls."""
    flows: list[tuple[str, int | None]] = []
    if spec.swarm.enabled:
        flows += [("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", spec.swarm.data_path_port)]
        if any(o.encrypted for o in spec.swarm.overlays):
            flows.append(("esp", None))
    if spec.docker.tls:
        flows.append(("tcp", 2376))
    return flows


def nft_lines(spec: LabSpec) -> list[str]:
    """The lines `nft list table inet swarmlab` shows for the lab: each lab flow accepted from
    the lab subnet, then dropped."""
    out = []
    for proto, port in lab_flows(spec):
        match = "meta l4proto esp" if proto == "esp" else f"{proto} dport {port}"
        out += [f"ip saddr {spec.network.subnet} {match} accept", f"{match} drop"]
    return out


def ufw_rules(spec: LabSpec) -> list[str]:
    """`ufw show added` lines (without `ufw `): SSH from anywhere, each lab flow from the subnet."""
    out = [f"allow {spec.firewall.ssh_port}/tcp"]
    for proto, port in lab_flows(spec):
        out.append(f"allow from {spec.network.subnet} proto esp" if proto == "esp" else
                   f"allow from {spec.network.subnet} to any port {port} proto {proto}")
    return out
