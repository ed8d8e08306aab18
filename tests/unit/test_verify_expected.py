"""The verification suite's own expected values (swarmlab/verify/expected.py) against literal
output, and a wrong deploy value caught by them."""

from __future__ import annotations

from pathlib import Path

import yaml

from swarmlab.model.spec import HARDENED_DAEMON, NodeSpec, OverlaySpec, load_spec, parse_spec
from swarmlab.verify import expected

ROOT = Path(__file__).resolve().parents[2]
SECURE = load_spec(ROOT / "tests" / "live" / "labs" / "secure.yaml")
LOCAL = load_spec(ROOT / "labs" / "local.yaml")


def _no_swarm():
    data = yaml.safe_load((ROOT / "labs" / "local.yaml").read_text())
    data["swarm"] = {"enabled": False}
    return parse_spec(yaml.safe_dump(data))


def test_daemon_json_literal():
    assert expected.daemon_json(SECURE) == {
        "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"},
        "live-restore": False, "icc": False, "no-new-privileges": True, "userland-proxy": False,
        "userns-remap": "default",
        "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 8192, "Soft": 1024}},
    }
    assert expected.daemon_json(_no_swarm()) == {
        "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}}


def test_hardened_options_agree_with_the_spec_module():
    """The two lists are written apart on purpose; a change to one must be made to both."""
    assert expected.HARDENED == HARDENED_DAEMON


def test_dict_differences():
    assert expected.dict_differences({"a": 1, "b": 2}, {"a": 1, "c": 3}) == {"b": (2, None), "c": (None, 3)}
    assert expected.dict_differences({"icc": False}, {"icc": False}) == {}


def test_node_labels_literal():
    node = NodeSpec(name="n", distro="debian-13", ip="10.0.0.1", role="worker",
                    labels={"zone": "b", "disk": "ssd"})
    assert expected.node_labels(node) == {"zone": "b", "disk": "ssd", "swarmlab.labels": "disk,zone"}
    bare = NodeSpec(name="n", distro="debian-13", ip="10.0.0.1", role="worker")
    assert expected.node_labels(bare) == {}
    assert expected.label_differences({"zone": "b", "disk": "ssd", "swarmlab.labels": "disk,zone",
                                       "by-hand": "x"}, node) == []
    assert expected.label_differences({"zone": "a", "swarmlab.labels": "disk,zone,old", "old": "1"}, node) == [
        "disk=None, spec 'ssd'", "swarmlab.labels='disk,zone,old', spec 'disk,zone'", "zone='a', spec 'b'",
        "old (set by swarmlab) is no longer in the spec"]
    assert expected.label_differences({"swarmlab.labels": "zone", "zone": "b"}, bare) == [
        "swarmlab.labels='zone', the spec sets no label", "zone (set by swarmlab) is no longer in the spec"]


def test_overlay_differences_literal():
    net = OverlaySpec(name="securenet", subnet="10.129.1.0/24", encrypted=True, labels={"a": "1"})
    good = {"Name": "securenet", "Driver": "overlay", "Scope": "swarm", "Attachable": True,
            "IPAM": {"Config": [{"Subnet": "10.129.1.0/24", "Gateway": "10.129.1.1"}]},
            "Options": {"encrypted": "", "com.docker.network.driver.overlay.vxlanid_list": "4097"},
            "Labels": {"a": "1"}}
    assert expected.overlay_differences(good, net) == []
    bad = {"Name": "securenet", "Driver": "bridge", "Scope": "local", "Attachable": False, "Ingress": True,
           "IPAM": {"Config": [{"Subnet": "10.129.1.0/24"}, {"Subnet": "10.129.2.0/24"}]}, "Options": {}}
    assert expected.overlay_differences(bad, net) == [
        "driver 'bridge', want 'overlay'", "scope 'local', want 'swarm'",
        "subnets ['10.129.1.0/24', '10.129.2.0/24'], spec ['10.129.1.0/24']",
        "encrypted False, spec True", "attachable False, spec True", "it is the ingress network",
        "labels {}, spec {'a': '1'}"]


def test_nft_and_ufw_lines_literal():
    assert expected.nft_lines(SECURE) == [
        "ip saddr 10.98.0.0/24 tcp dport 2377 accept", "tcp dport 2377 drop",
        "ip saddr 10.98.0.0/24 tcp dport 7946 accept", "tcp dport 7946 drop",
        "ip saddr 10.98.0.0/24 udp dport 7946 accept", "udp dport 7946 drop",
        "ip saddr 10.98.0.0/24 udp dport 4789 accept", "udp dport 4789 drop",
        "ip saddr 10.98.0.0/24 meta l4proto esp accept", "meta l4proto esp drop",
        "ip saddr 10.98.0.0/24 tcp dport 2376 accept", "tcp dport 2376 drop",
    ]
    assert expected.ufw_rules(SECURE) == [
        "allow 22/tcp",
        "allow from 10.98.0.0/24 to any port 2377 proto tcp",
        "allow from 10.98.0.0/24 to any port 7946 proto tcp",
        "allow from 10.98.0.0/24 to any port 7946 proto udp",
        "allow from 10.98.0.0/24 to any port 4789 proto udp",
        "allow from 10.98.0.0/24 proto esp",
        "allow from 10.98.0.0/24 to any port 2376 proto tcp",
    ]
    assert expected.nft_lines(_no_swarm()) == [] and expected.ufw_rules(_no_swarm()) == ["allow 22/tcp"]
