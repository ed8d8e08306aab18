"""Hostile and subtly wrong lab specs (issue #12): each is refused with the field path and a
short value, before any host is touched; files that are not specs are refused in bounded time.

Cases are built from labs/local.yaml (see test_spec.py): one mutation per case.
"""

from __future__ import annotations

import copy
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from swarmlab.cli.commands import main
from swarmlab.model.spec import MAX_SPEC_BYTES, SHOW_MAX, SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "labs" / "local.yaml"

Spec = dict[str, Any]


def base() -> Spec:
    return copy.deepcopy(yaml.safe_load(LOCAL.read_text()))


def refused(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    return info.value.problems


def dumped(fn: Callable[[Spec], Any]) -> str:
    data = base()
    fn(data)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def setter(*path: Any, value: Any) -> Callable[[Spec], None]:
    """A mutation that sets data[path...] = value (creating mappings on the way)."""

    def fn(data: Spec) -> None:
        target = data
        for key in path[:-1]:
            if isinstance(target, dict):
                target = target.setdefault(key, {})
            else:
                target = target[key]
        target[path[-1]] = value

    return fn


INJECTION = "a; touch /tmp/x #"

# (id, mutation, field path the problem starts with, words the problem line contains)
CASES: list[tuple[str, Callable[[Spec], None], str, tuple[str, ...]]] = [
    # names: full-string matches, hostnames, Docker names
    ("lab-name-trailing-newline", setter("name", value="local\n"), "name",
     ("control character",)),
    ("lab-name-shell", setter("name", value="lab;reboot"), "name", ("lowercase letters",)),
    ("lab-name-space", setter("name", value="my lab"), "name", ("lowercase letters",)),
    ("lab-name-unicode", setter("name", value="läb"), "name", ("lowercase letters",)),
    ("lab-name-not-a-string", setter("name", value=42), "name", ("valid string",)),
    ("node-name-trailing-newline", setter("nodes", 1, "name", value="node2\n"), "nodes[1].name",
     ("not a valid hostname",)),
    ("node-name-subshell", setter("nodes", 1, "name", value="$(reboot)"), "nodes[1].name",
     ("not a valid hostname",)),
    ("node-name-slash", setter("nodes", 0, "name", value="../etc"), "nodes[0].name",
     ("not a valid hostname",)),
    ("distro-trailing-newline", setter("nodes", 0, "distro", value="debian-13\n"),
     "nodes[0].distro", ("not supported",)),
    # interfaces (kernel rules, no shell characters)
    ("interface-injection", setter("network", "interface", value="eth0; reboot"),
     "network.interface", ("not an interface name",)),
    ("interface-too-long", setter("network", "interface", value="a" * 16),
     "network.interface", ("1-15",)),
    ("interface-slash", setter("network", "interface", value="eth0/1"), "network.interface",
     ("no '/'",)),
    ("interface-dotdot", setter("network", "interface", value=".."), "network.interface",
     ("not an interface name",)),
    ("node-interface-backtick", setter("nodes", 2, "interface", value="`id`"),
     "nodes[2].interface", ("not an interface name",)),
    ("node-interface-space", setter("nodes", 2, "interface", value="eth 0"),
     "nodes[2].interface", ("not an interface name",)),
    # labels (Docker's rules)
    ("node-label-key-injection", setter("nodes", 0, "labels", value={"zone;rm": "a"}),
     "nodes[0].labels", ("not a valid label key",)),
    ("node-label-key-equals", setter("nodes", 0, "labels", value={"zone=a": "b"}),
     "nodes[0].labels", ("not a valid label key",)),
    ("node-label-key-reserved", setter("nodes", 0, "labels", value={"com.docker.x": "a"}),
     "nodes[0].labels", ("reserves",)),
    ("node-label-value-newline", setter("nodes", 0, "labels", value={"zone": "a\nb"}),
     "nodes[0].labels.zone", ("control character",)),
    ("node-label-value-too-long", setter("nodes", 0, "labels", value={"zone": "z" * 300}),
     "nodes[0].labels.zone", ("longer than 255",)),
    ("node-label-value-not-a-string", setter("nodes", 0, "labels", value={"zone": 1}),
     "nodes[0].labels.zone", ("valid string",)),
    ("overlay-label-key-injection",
     setter("swarm", "overlays", 0, "labels", value={"$(id)": "x"}),
     "swarm.overlays[0].labels", ("not a valid label key",)),
    ("overlay-name-injection", setter("swarm", "overlays", 0, "name", value="net;id"),
     "swarm.overlays[0].name", ("not a valid network name",)),
    ("overlay-name-trailing-newline", setter("swarm", "overlays", 0, "name", value="net\n"),
     "swarm.overlays[0].name", ("not a valid network name",)),
    # networks
    ("subnet-slash-0", setter("network", "subnet", value="0.0.0.0/0"), "network.subnet",
     ("'this network'",)),
    ("subnet-too-wide", setter("network", "subnet", value="10.0.0.0/8"), "network.subnet",
     ("too wide",)),
    ("subnet-loopback", setter("network", "subnet", value="127.0.0.0/24"), "network.subnet",
     ("loopback",)),
    ("subnet-multicast", setter("network", "subnet", value="224.1.0.0/24"), "network.subnet",
     ("multicast",)),
    ("subnet-link-local", setter("network", "subnet", value="169.254.10.0/24"),
     "network.subnet", ("link-local",)),
    ("subnet-reserved", setter("network", "subnet", value="240.0.0.0/24"), "network.subnet",
     ("reserved",)),
    ("subnet-netmask-notation", setter("network", "subnet", value="10.77.0.0/255.255.255.0"),
     "network.subnet", ("write it as 10.77.0.0/24",)),
    ("subnet-leading-zero-prefix", setter("network", "subnet", value="10.77.0.0/024"),
     "network.subnet", ("write it as 10.77.0.0/24",)),
    ("subnet-no-room-for-cache",
     lambda d: (d["network"].update(subnet="10.77.0.8/29", gateway="10.77.0.9"),
                d["nodes"].extend({"name": f"node{i}", "distro": "debian-13",
                                   "ip": f"10.77.0.{10 + i}", "role": "worker"}
                                  for i in (3, 4))),
     "network.subnet", ("package cache", "need 7")),
    ("overlay-subnet-too-wide", setter("swarm", "overlays", 0, "subnet", value="10.0.0.0/12"),
     "swarm.overlays[0].subnet", ("too wide",)),
    ("pool-slash-0", setter("swarm", "default_addr_pool", value=["0.0.0.0/0"]),
     "swarm.default_addr_pool[0]", ("'this network'",)),
    ("pool-mask-shorter-than-pool", setter("swarm", "default_addr_pool_mask_length", value=12),
     "swarm.default_addr_pool[0]", ("smaller than swarm.default_addr_pool_mask_length",)),
    ("gateway-trailing-space", setter("network", "gateway", value="10.77.0.1 "),
     "network.gateway", ("not a valid IPv4 address",)),
    ("gateway-loopback", lambda d: d["network"].update(gateway="127.0.0.1"), "network.gateway",
     ("loopback",)),
    ("dns-multicast", setter("network", "dns", value=["224.0.0.251"]), "network.dns[0]",
     ("multicast",)),
    ("dns-injection", setter("network", "dns", value=["1.1.1.1; id"]), "network.dns[0]",
     ("not a valid IPv4 address",)),
    ("node-ip-as-integer", setter("nodes", 0, "ip", value=167772171), "nodes[0].ip",
     ("valid string",)),
    # ports
    ("data-path-port-privileged", setter("swarm", "data_path_port", value=80),
     "swarm.data_path_port", ("1024-49151",)),
    ("data-path-port-ephemeral", setter("swarm", "data_path_port", value=50000),
     "swarm.data_path_port", ("1024-49151",)),
    ("data-path-port-bool", setter("swarm", "data_path_port", value=True),
     "swarm.data_path_port", ("valid integer",)),
    ("data-path-port-string", setter("swarm", "data_path_port", value="4789"),
     "swarm.data_path_port", ("valid integer",)),
    ("ssh-port-is-swarm-port", setter("firewall", "ssh_port", value=2377), "firewall.ssh_port",
     ("swarm cluster management",)),
    ("ssh-port-is-gossip-port", setter("firewall", "ssh_port", value=7946), "firewall.ssh_port",
     ("gossip",)),
    # docker.daemon
    ("daemon-tcp-without-tls", setter("docker", "daemon", value={"hosts": ["tcp://0.0.0.0:2375"]}),
     "docker.daemon.hosts", ("without TLS",)),
    ("daemon-hosts-unix", setter("docker", "daemon", value={"hosts": ["unix:///tmp/d.sock"]}),
     "docker.daemon.hosts", ("-H fd://",)),
    ("daemon-live-restore", setter("docker", "daemon", value={"live-restore": True}),
     "docker.daemon.live-restore", ("incompatible with swarm",)),
    ("daemon-iptables-off", setter("docker", "daemon", value={"iptables": False}),
     "docker.daemon.iptables", ("breaks the lab",)),
    ("daemon-log-driver-twice", setter("docker", "daemon", value={"log-driver": "syslog"}),
     "docker.daemon.log-driver", ("docker.log_driver",)),
    # docker.version, log driver
    ("version-injection", setter("docker", "version", value="1.0; rm -rf /"), "docker.version",
     ("not a package version",)),
    ("version-trailing-newline", setter("docker", "version", value="5:27.3.1-1\n"),
     "docker.version", ("not a package version",)),
    ("log-driver-injection", setter("docker", "log_driver", value="json-file $(id)"),
     "docker.log_driver", ("not a log driver name",)),
    # users
    ("rootless-user-duplicate", setter("rootless", "users", value=["alice", "alice"]),
     "rootless.users[1]", ("repeats rootless.users[0]",)),
    ("rootless-user-root", setter("rootless", "users", value=["root"]), "rootless.users[0]",
     ("non-root",)),
    ("rootless-user-system", setter("rootless", "users", value=["daemon"]), "rootless.users[0]",
     ("system account",)),
    ("rootless-user-systemd", setter("rootless", "users", value=["systemd-network"]),
     "rootless.users[0]", ("system account",)),
    ("docker-user-injection", setter("docker", "users", value=["lab;id"]), "docker.users[0]",
     ("not a valid non-root user name",)),
    ("docker-user-newline", setter("docker", "users", value=["lab\n"]), "docker.users[0]",
     ("not a valid non-root user name",)),
    ("docker-user-duplicate", setter("docker", "users", value=["lab", "lab"]), "docker.users[1]",
     ("repeats",)),
    # box, sizes
    ("box-injection", setter("nodes", 0, "box", value="bento/ubuntu'; id"), "nodes[0].box",
     ("not a Vagrant box name",)),
    ("too-many-nodes", lambda d: d.update(nodes=[
        {"name": f"n{i}", "distro": "debian-13", "ip": "10.77.0.11", "role": "worker"}
        for i in range(101)]), "nodes",
     ("at most 100",)),
]


@pytest.mark.parametrize(("mutate", "path", "needles"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_hostile_value_is_refused_with_its_field(mutate, path, needles) -> None:
    problems = refused(dumped(mutate))
    hits = [p for p in problems if p.startswith(f"{path}: ") and all(n in p for n in needles)]
    assert hits, f"no problem for {path!r} mentioning {needles!r} in {problems!r}"


# --------------------------------------------------------------------- values in error lines


def test_a_huge_value_is_shortened_in_the_error() -> None:
    problems = refused(dumped(setter("nodes", 0, "name", value="x" * 50_000)))
    (line,) = [p for p in problems if p.startswith("nodes[0].name: ")]
    assert len(line) < SHOW_MAX + 150
    assert "(50000 chars)" in line


def test_a_huge_unknown_key_is_shortened_in_the_error() -> None:
    problems = refused(dumped(setter("k" * 10_000, value=1)))
    assert all(len(p) < 2 * SHOW_MAX + 100 for p in problems), problems
    assert any("unknown field" in p for p in problems)


def test_daemon_value_that_is_not_json() -> None:
    text = dumped(lambda d: None) + "\n"
    text = text.replace("docker:\n", "docker:\n  daemon: {since: 2024-01-01}\n", 1)
    (line,) = [p for p in refused(text) if p.startswith("docker.daemon.since: ")]
    assert "date" in line and "JSON" in line


def test_label_values_with_shell_characters_are_accepted_to_be_quoted() -> None:
    spec = parse_spec(dumped(setter("nodes", 0, "labels", value={"zone": INJECTION})))
    assert spec.nodes[0].labels == {"zone": INJECTION}


# --------------------------------------------------------------------- YAML structure


def test_yaml_alias_is_refused_without_expanding() -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        laughs += f"{cur}: &{cur} [{', '.join(['*' + prev] * 10)}]\n"
    start = time.monotonic()
    (line,) = refused(laughs)
    assert time.monotonic() - start < 2
    assert line.startswith("YAML alias *a at line 2:")
    assert "write the value out" in line


def test_yaml_merge_of_an_anchor_is_refused() -> None:
    text = LOCAL.read_text().replace("role: manager, labels: {zone: a}",
                                     "role: manager, labels: &z {zone: a}")
    text = text.replace("labels: {zone: b}}", "labels: *z}", 1)
    (line,) = refused(text)
    assert "alias *z" in line


def test_deep_nesting_is_refused() -> None:
    text = "name: x\nnodes: " + "[" * 5000 + "]" * 5000 + "\n"
    (line,) = refused(text)
    assert line.startswith("YAML nested deeper than ")


def test_duplicate_key_names_key_and_lines() -> None:
    text = LOCAL.read_text().replace("name: local\n", "name: local\nname: evil\n", 1)
    (line,) = refused(text)
    assert line.startswith("duplicate key 'name' at line ")
    first = LOCAL.read_text().splitlines().index("name: local") + 1
    assert f"at line {first + 1} (first at line {first})" in line


def test_nested_duplicate_key_is_refused() -> None:
    text = LOCAL.read_text().replace("  subnet: 10.77.0.0/24\n",
                                     "  subnet: 10.77.0.0/24\n  subnet: 10.88.0.0/24\n")
    (line,) = refused(text)
    assert "duplicate key 'subnet'" in line


@pytest.mark.parametrize("text", ["- a\n- b\n", "'just text'\n", "~\n"], ids=["list", "str", "null"])
def test_top_level_not_a_mapping(text: str) -> None:
    assert refused(text) == ["(top level): the spec must be a YAML mapping with name and nodes"]


def test_python_object_tag_is_refused() -> None:
    (line,) = refused("name: !!python/object/apply:os.system ['id']\n")
    assert line.startswith("YAML syntax error at line 1")


# --------------------------------------------------------------------- the file


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + os.urandom(64))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "NUL bytes" in info.value.problems[0] or "not UTF-8" in info.value.problems[0]


def test_latin1_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(LOCAL.read_bytes().replace(b"name: local", b"name: l\xe4b"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.problems[0].startswith("the spec is not UTF-8 text (byte 0xe4 at offset ")


def test_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(LOCAL.read_text() + "#" * (MAX_SPEC_BYTES + 1) + "\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "larger than" in info.value.problems[0]


def test_dev_zero_is_refused_at_once() -> None:
    start = time.monotonic()
    with pytest.raises(SpecError) as info:
        load_spec("/dev/zero")
    assert time.monotonic() - start < 1
    assert info.value.problems == [
        "cannot read the spec: not a regular file (give the path of a YAML file)"]


def test_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    signal.alarm(5)  # a blocking open would hang the test run
    try:
        with pytest.raises(SpecError) as info:
            load_spec(fifo)
    finally:
        signal.alarm(0)
    assert "not a regular file" in info.value.problems[0]


def test_cli_refuses_dev_zero_with_exit_2_and_no_traceback() -> None:
    result = CliRunner().invoke(main, ["validate", "/dev/zero"])
    assert result.exit_code == 2
    assert "not a regular file" in result.output
    assert "Traceback" not in result.output


def test_cli_refuses_an_injection_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(dumped(setter("nodes", 0, "interface", value="eth0; touch /tmp/x #")))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert "nodes[0].interface: 'eth0; touch /tmp/x #' is not an interface name" in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------- warnings


def _warnings(fn: Callable[[Spec], Any]) -> list[str]:
    return parse_spec(dumped(fn)).warnings()


def test_lab_subnet_in_docker0_range_is_warned() -> None:
    def fn(d: Spec) -> None:
        d["network"].update(subnet="172.17.5.0/24", gateway="172.17.5.1")
        for i, n in enumerate(d["nodes"]):
            n["ip"] = f"172.17.5.{11 + i}"

    (w,) = _warnings(fn)
    assert w.startswith("network.subnet: 172.17.5.0/24 overlaps docker0's default 172.17.0.0/16")


def test_lab_subnet_in_swarm_default_pool_is_warned_without_a_pool() -> None:
    (w,) = _warnings(setter("swarm", "default_addr_pool", value=[]))
    assert w.startswith("network.subnet: 10.77.0.0/24 lies in Docker's default swarm address pool")


def test_overlay_on_the_ingress_range_is_warned_without_a_pool() -> None:
    def fn(d: Spec) -> None:
        d["swarm"]["default_addr_pool"] = []
        d["swarm"]["overlays"][0]["subnet"] = "10.0.0.0/24"

    assert any(w.startswith("swarm.overlays[0].subnet: 10.0.0.0/24 overlaps the swarm ingress")
               for w in _warnings(fn))


def test_no_range_warning_with_an_address_pool() -> None:
    assert _warnings(lambda d: None) == []


def test_version_pin_without_the_official_source_is_warned() -> None:
    (w,) = _warnings(setter("docker", "version", value="5:27.3.1-1~debian.13~trixie"))
    assert w.startswith("docker.version: '5:27.3.1-1~debian.13~trixie' pins only")
    assert _warnings(lambda d: d["docker"].update(source="official", version="5:27.3.1-1")) == []
