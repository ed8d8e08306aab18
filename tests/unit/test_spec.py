"""Unit tests for the lab-spec validator (swarmlab/model/spec.py).

Each bad spec is built from labs/local.yaml: load it, mutate a copy, dump it back to
YAML text and feed it to `parse_spec`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarmlab.model.distros import DISTROS
from swarmlab.model.spec import LabSpec, SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "labs" / "local.yaml"
VMLAB = ROOT / "lab.yaml"

Spec = dict[str, Any]


def base() -> Spec:
    """A fresh, mutable copy of the valid container-lab spec."""
    return copy.deepcopy(yaml.safe_load(LOCAL.read_text()))


def problems_of(data: Any) -> list[str]:
    """Dump `data` to YAML, parse it and return the SpecError problem lines."""
    text = yaml.safe_dump(data, sort_keys=False)
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    return info.value.problems


def problem(data: Any, path: str, *needles: str) -> str:
    """The one problem line for `path` that mentions every needle (fails otherwise)."""
    problems = problems_of(data)
    hits = [p for p in problems if p.startswith(f"{path}: ") and all(n in p for n in needles)]
    assert hits, f"no problem starting with {path!r} mentioning {needles!r} in {problems!r}"
    return hits[0]


def mutated(fn: Callable[[Spec], None]) -> Spec:
    data = base()
    fn(data)
    return data


# ---------------------------------------------------------------------------- valid specs


@pytest.mark.parametrize("path", [LOCAL, VMLAB], ids=["labs/local.yaml", "lab.yaml"])
def test_shipped_specs_are_valid(path: Path) -> None:
    spec = load_spec(path)
    raw = yaml.safe_load(path.read_text())
    assert isinstance(spec, LabSpec)
    assert spec.name == raw["name"]
    assert [n.name for n in spec.nodes] == [n["name"] for n in raw["nodes"]]
    assert [n.ip for n in spec.nodes] == [n["ip"] for n in raw["nodes"]]
    assert [n.name for n in spec.managers] == ["node1"]
    assert [n.name for n in spec.workers] == ["node2", "node3"]
    assert spec.first_manager.name == "node1"
    assert spec.prefixlen == 24


def test_dumped_base_spec_round_trips() -> None:
    # The helper's starting point must itself be valid, or every test below proves nothing.
    spec = parse_spec(yaml.safe_dump(base(), sort_keys=False))
    assert spec.name == "local"
    assert spec.swarm.overlays[1].encrypted is True


def test_defaults_fill_optional_sections() -> None:
    data = base()
    for key in ("docker", "swarm", "rootless", "firewall"):
        del data[key]
    spec = parse_spec(yaml.safe_dump(data))
    assert spec.docker.source == "auto"
    assert spec.swarm.data_path_port == 4789
    assert spec.swarm.default_addr_pool_mask_length == 24
    assert spec.firewall.ssh_port == 22
    assert spec.firewall.backend == "auto"


@pytest.mark.parametrize("managers", [1, 3, 5])
def test_odd_manager_counts_are_accepted(managers: int) -> None:
    data = base()
    data["nodes"] = [
        {"name": f"node{i}", "distro": "debian-13", "ip": f"10.77.0.{10 + i}",
         "role": "manager" if i <= managers else "worker"}
        for i in range(1, 6)
    ]
    spec = parse_spec(yaml.safe_dump(data))
    assert len(spec.managers) == managers


# ---------------------------------------------------------------------------- YAML level


def test_yaml_syntax_error_reports_line_number() -> None:
    lines = LOCAL.read_text().splitlines()
    idx = next(i for i, line in enumerate(lines) if line.startswith("  gateway:"))
    lines[idx] = "  gateway: 10.77.0.1: oops"  # "mapping values are not allowed here"
    with pytest.raises(SpecError) as info:
        parse_spec("\n".join(lines) + "\n", source="broken.yaml")
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"YAML syntax error at line {idx + 1}, column ")
    assert info.value.source == "broken.yaml"
    assert "broken.yaml: invalid lab spec" in str(info.value)


@pytest.mark.parametrize(
    "text",
    [yaml.safe_dump(base()["nodes"]), "just a string\n", "42\n", ""],
    ids=["list", "string", "int", "empty"],
)
def test_top_level_must_be_a_mapping(text: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert info.value.problems == [
        "(top level): the spec must be a YAML mapping with name and nodes"
    ]


# ---------------------------------------------------------------------------- schema


@pytest.mark.parametrize(
    "path, mutate, value",
    [
        ("nmae", lambda d: d.update(nmae="oops"), "'oops'"),
        ("network.netmask", lambda d: d["network"].update(netmask="255.0.0.0"), "'255.0.0.0'"),
        ("nodes[1].ipaddr", lambda d: d["nodes"][1].update(ipaddr="10.77.0.99"), "'10.77.0.99'"),
        ("swarm.overlays[0].driver", lambda d: d["swarm"]["overlays"][0].update(driver="macvlan"),
         "'macvlan'"),
    ],
    ids=["top", "network", "node", "overlay"],
)
def test_unknown_field(path: str, mutate: Callable[[Spec], None], value: str) -> None:
    line = problem(mutated(mutate), path, "unknown field", value)
    assert "check its spelling" in line


@pytest.mark.parametrize(
    "path, mutate",
    [
        ("name", lambda d: d.pop("name")),
        ("network", lambda d: d.pop("network")),
        ("nodes", lambda d: d.pop("nodes")),
        ("network.subnet", lambda d: d["network"].pop("subnet")),
        ("network.gateway", lambda d: d["network"].pop("gateway")),
        ("nodes[0].ip", lambda d: d["nodes"][0].pop("ip")),
        ("nodes[1].name", lambda d: d["nodes"][1].pop("name")),
        ("nodes[2].distro", lambda d: d["nodes"][2].pop("distro")),
        ("nodes[0].role", lambda d: d["nodes"][0].pop("role")),
        ("swarm.overlays[1].name", lambda d: d["swarm"]["overlays"][1].pop("name")),
    ],
    ids=lambda v: v if isinstance(v, str) else "mutate",
)
def test_missing_required_field(path: str, mutate: Callable[[Spec], None]) -> None:
    problem(mutated(mutate), path, "Field required")


# ---------------------------------------------------------------------------- lab name


@pytest.mark.parametrize("name", ["My_Lab", "lab.one", "-lab", "lab-", "x" * 64])
def test_invalid_lab_name(name: str) -> None:
    data = base()
    data["name"] = name
    problem(data, "name", repr(name), "lowercase letters")


# ---------------------------------------------------------------------------- network


@pytest.mark.parametrize("subnet", ["10.77.0.0/33", "not-a-network", "10.77.0/24x"])
def test_invalid_subnet_cidr(subnet: str) -> None:
    data = base()
    data["network"]["subnet"] = subnet
    problem(data, "network.subnet", repr(subnet), "is not a valid IPv4 network in CIDR form")


def test_subnet_with_host_bits_set() -> None:
    data = base()
    data["network"]["subnet"] = "10.77.0.5/24"
    problem(data, "network.subnet", "'10.77.0.5/24'", "host bits set")


@pytest.mark.parametrize("prefix", [30, 31, 32])
def test_subnet_too_small(prefix: int) -> None:
    data = base()
    data["network"]["subnet"] = f"10.77.0.0/{prefix}"
    problem(data, "network.subnet", f"10.77.0.0/{prefix}", "too small", "/29 or larger")


def test_subnet_of_29_is_big_enough() -> None:
    data = base()
    data["network"]["subnet"] = "10.77.0.8/29"
    data["network"]["gateway"] = "10.77.0.9"
    for i, node in enumerate(data["nodes"]):
        node["ip"] = f"10.77.0.{10 + i}"
    assert parse_spec(yaml.safe_dump(data)).prefixlen == 29


@pytest.mark.parametrize("gateway", ["10.77.0.300", "gateway.local"])
def test_gateway_invalid(gateway: str) -> None:
    data = base()
    data["network"]["gateway"] = gateway
    problem(data, "network.gateway", repr(gateway), "is not a valid IPv4 address")


def test_gateway_outside_subnet() -> None:
    data = base()
    data["network"]["gateway"] = "10.78.0.1"
    problem(data, "network.gateway", "10.78.0.1", "outside network.subnet 10.77.0.0/24")


@pytest.mark.parametrize(
    "gateway, which", [("10.77.0.0", "network"), ("10.77.0.255", "broadcast")]
)
def test_gateway_is_network_or_broadcast_address(gateway: str, which: str) -> None:
    data = base()
    data["network"]["gateway"] = gateway
    problem(data, "network.gateway", gateway, f"is the {which} address")


def test_invalid_dns_entry() -> None:
    data = base()
    data["network"]["dns"] = ["127.0.0.11", "dns.example"]
    line = problem(data, "network.dns[1]", "'dns.example'", "not a valid IPv4 address")
    assert not any(p.startswith("network.dns[0]") for p in problems_of(data)), line


# ---------------------------------------------------------------------------- nodes


def test_empty_nodes() -> None:
    data = base()
    data["nodes"] = []
    problems = problems_of(data)
    assert "nodes: the lab needs at least one node" in problems
    # "no manager" would be noise on top of "no nodes at all"
    assert not any("role: manager" in p for p in problems), problems


@pytest.mark.parametrize("name", ["Node1", "-node", "node-", "node_1", "node.1", "n" * 64])
def test_invalid_hostname(name: str) -> None:
    data = base()
    data["nodes"][1]["name"] = name
    problem(data, "nodes[1].name", repr(name), "not a valid hostname")


def test_duplicate_node_name() -> None:
    data = base()
    data["nodes"][2]["name"] = "node1"
    problem(data, "nodes[2].name", "'node1'", "repeats nodes[0].name")


def test_unknown_distro_lists_supported_ones() -> None:
    data = base()
    data["nodes"][0]["distro"] = "centos-7"
    line = problem(data, "nodes[0].distro", "'centos-7'", "not supported")
    assert set(DISTROS) == {"ubuntu-22.04", "ubuntu-24.04", "debian-12", "debian-13",
                            "debian-14", "manjaro"}
    assert "use one of: " + ", ".join(sorted(DISTROS)) in line


@pytest.mark.parametrize("ip", ["10.77.0.256", "node2.local", "10.77.0.12/24"])
def test_invalid_node_ip(ip: str) -> None:
    data = base()
    data["nodes"][1]["ip"] = ip
    problem(data, "nodes[1].ip", repr(ip), "not a valid IPv4 address")


def test_node_ip_outside_subnet() -> None:
    data = base()
    data["nodes"][2]["ip"] = "10.78.0.13"
    problem(data, "nodes[2].ip", "10.78.0.13", "outside network.subnet 10.77.0.0/24")


@pytest.mark.parametrize(
    "ip, which",
    [("10.77.0.1", "gateway"), ("10.77.0.0", "network"), ("10.77.0.255", "broadcast")],
)
def test_node_ip_is_reserved_address(ip: str, which: str) -> None:
    data = base()
    data["nodes"][1]["ip"] = ip
    problem(data, "nodes[1].ip", ip, f"is the {which} address of the lab subnet")


def test_duplicate_node_ip() -> None:
    data = base()
    data["nodes"][2]["ip"] = "10.77.0.11"
    problem(data, "nodes[2].ip", "10.77.0.11", "repeats nodes[0].ip")


def test_no_manager() -> None:
    data = base()
    data["nodes"][0]["role"] = "worker"
    problem(data, "nodes", "no node has role: manager")


@pytest.mark.parametrize("managers", [2, 4])
def test_even_manager_count(managers: int) -> None:
    data = base()
    data["nodes"].append({"name": "node4", "distro": "debian-13", "ip": "10.77.0.14",
                          "role": "worker"})
    for node in data["nodes"][:managers]:
        node["role"] = "manager"
    problem(data, "nodes", f"{managers} managers is an even count", "odd number")


@pytest.mark.parametrize("role", ["boss", "Manager", "leader"])
def test_bad_role_value(role: str) -> None:
    data = base()
    data["nodes"][1]["role"] = role
    problem(data, "nodes[1].role", f"(got {role!r})", "'manager' or 'worker'")


def test_invalid_node_label_key() -> None:
    data = base()
    data["nodes"][0]["labels"] = {"zone": "a", "-bad key": "x"}
    problem(data, "nodes[0].labels", "'-bad key'", "not a valid label key")


@pytest.mark.parametrize(
    "field, value, msg",
    [
        ("cpus", 0, "greater than or equal to 1"),
        ("cpus", 65, "less than or equal to 64"),
        ("memory", 256, "greater than or equal to 512"),
        ("memory", 262145, "less than or equal to 262144"),
    ],
)
def test_cpus_and_memory_out_of_range(field: str, value: int, msg: str) -> None:
    data = base()
    data["nodes"][2][field] = value
    problem(data, f"nodes[2].{field}", f"(got {value})", msg)


def test_cpus_and_memory_bounds_are_inclusive() -> None:
    data = base()
    data["nodes"][0].update(cpus=1, memory=512)
    data["nodes"][1].update(cpus=64, memory=262144)
    spec = parse_spec(yaml.safe_dump(data))
    assert (spec.nodes[1].cpus, spec.nodes[1].memory) == (64, 262144)


# ---------------------------------------------------------------------------- ports


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_data_path_port_out_of_range(port: int) -> None:
    data = base()
    data["swarm"]["data_path_port"] = port
    problem(data, "swarm.data_path_port", f"{port} is not a port", "1-65535")


@pytest.mark.parametrize("port", [2377, 7946])
def test_data_path_port_collides_with_swarm_ports(port: int) -> None:
    data = base()
    data["swarm"]["data_path_port"] = port
    problem(data, "swarm.data_path_port", f"{port} collides")


def test_data_path_port_collides_with_ssh_port() -> None:
    data = base()
    data["swarm"]["data_path_port"] = 2222
    data["firewall"]["ssh_port"] = 2222
    problem(data, "swarm.data_path_port", "2222 collides")


def test_custom_data_path_port_is_accepted() -> None:
    data = base()
    data["swarm"]["data_path_port"] = 4790
    assert parse_spec(yaml.safe_dump(data)).swarm.data_path_port == 4790


@pytest.mark.parametrize("port", [0, 65536])
def test_ssh_port_out_of_range(port: int) -> None:
    data = base()
    data["firewall"]["ssh_port"] = port
    problem(data, "firewall.ssh_port", f"{port} is not a port", "1-65535")


@pytest.mark.parametrize("length", [7, 30, 0])
def test_default_addr_pool_mask_length_out_of_range(length: int) -> None:
    data = base()
    data["swarm"]["default_addr_pool_mask_length"] = length
    problem(data, "swarm.default_addr_pool_mask_length", "8-29")


def test_default_addr_pool_mask_length_message_shows_value() -> None:
    data = base()
    data["swarm"]["default_addr_pool_mask_length"] = 30
    problem(data, "swarm.default_addr_pool_mask_length", "30")


@pytest.mark.parametrize("length", [8, 29])
def test_default_addr_pool_mask_length_bounds_are_inclusive(length: int) -> None:
    data = base()
    data["swarm"]["default_addr_pool_mask_length"] = length
    if length < 16:  # the shipped /16 pool cannot be cut into /8 networks
        data["swarm"]["default_addr_pool"] = ["172.16.0.0/12"] if length >= 12 else []
    assert parse_spec(yaml.safe_dump(data)).swarm.default_addr_pool_mask_length == length


# ---------------------------------------------------------------------------- address pools


@pytest.mark.parametrize("pool", ["10.20.0.0/99", "pool", "10.20.0.1/16"])
def test_default_addr_pool_invalid(pool: str) -> None:
    data = base()
    data["swarm"]["default_addr_pool"] = ["10.21.0.0/16", pool]
    problem(data, "swarm.default_addr_pool[1]", repr(pool), "not a valid IPv4 network")


def test_default_addr_pool_overlaps_lab_subnet() -> None:
    data = base()
    data["swarm"]["default_addr_pool"] = ["10.77.0.0/16"]
    problem(data, "swarm.default_addr_pool[0]", "10.77.0.0/16",
            "overlaps network.subnet 10.77.0.0/24", "disjoint")


def test_overlay_subnet_overlaps_lab_subnet() -> None:
    data = base()
    data["swarm"]["overlays"][0]["subnet"] = "10.77.0.128/25"
    problem(data, "swarm.overlays[0].subnet", "10.77.0.128/25",
            "overlaps network.subnet 10.77.0.0/24")


def test_overlay_subnet_overlaps_another_overlay() -> None:
    data = base()
    data["swarm"]["overlays"][1]["subnet"] = "10.30.0.0/25"
    problem(data, "swarm.overlays[1].subnet", "10.30.0.0/25",
            "overlaps swarm.overlays[0].subnet 10.30.0.0/24")


def test_overlay_subnet_invalid() -> None:
    data = base()
    data["swarm"]["overlays"][1]["subnet"] = "10.31.0.0/40"
    problem(data, "swarm.overlays[1].subnet", "'10.31.0.0/40'", "not a valid IPv4 network")


def test_overlay_without_subnet_is_accepted() -> None:
    data = base()
    del data["swarm"]["overlays"][0]["subnet"]
    assert parse_spec(yaml.safe_dump(data)).swarm.overlays[0].subnet is None


# ---------------------------------------------------------------------------- overlay names


@pytest.mark.parametrize("name", ["ingress", "docker_gwbridge", "bridge", "host", "none"])
def test_reserved_overlay_name(name: str) -> None:
    data = base()
    data["swarm"]["overlays"][0]["name"] = name
    problem(data, "swarm.overlays[0].name", repr(name), "reserved by Docker")


def test_duplicate_overlay_name() -> None:
    data = base()
    data["swarm"]["overlays"][1]["name"] = "labnet"
    problem(data, "swarm.overlays[1].name", "'labnet'", "listed twice")


@pytest.mark.parametrize("name", ["-net", "my net", ""])
def test_invalid_overlay_name(name: str) -> None:
    data = base()
    data["swarm"]["overlays"][0]["name"] = name
    problem(data, "swarm.overlays[0].name", repr(name), "not a valid network name")


# ---------------------------------------------------------------------------- users


@pytest.mark.parametrize("section", ["docker", "rootless"])
@pytest.mark.parametrize("user", ["root", "Alice", "1bob", "bob smith", "a" * 33, ""])
def test_invalid_user_names(section: str, user: str) -> None:
    data = base()
    data[section]["users"] = ["lab", user]
    problem(data, f"{section}.users[1]", repr(user), "not a valid non-root user name")


@pytest.mark.parametrize("user", ["_svc", "bob-2", "a" * 32])
def test_valid_user_names(user: str) -> None:
    data = base()
    data["rootless"]["users"] = [user]
    assert parse_spec(yaml.safe_dump(data)).rootless.users == [user]


# ---------------------------------------------------------------------------- enums


@pytest.mark.parametrize("backend", ["iptables", "UFW"])
def test_bad_firewall_backend(backend: str) -> None:
    data = base()
    data["firewall"]["backend"] = backend
    problem(data, "firewall.backend", f"(got {backend!r})", "'nftables'")


@pytest.mark.parametrize("source", ["snap", "docker-ce"])
def test_bad_docker_source(source: str) -> None:
    data = base()
    data["docker"]["source"] = source
    problem(data, "docker.source", f"(got {source!r})", "'official'")


# ---------------------------------------------------------------------------- several at once


def test_cross_field_problems_are_all_reported_at_once() -> None:
    data = base()
    data["name"] = "Bad_Name"
    data["network"]["gateway"] = "10.78.0.1"
    data["nodes"][2]["ip"] = "10.77.0.11"
    data["nodes"][1]["distro"] = "gentoo"
    data["rootless"]["users"] = ["root"]
    data["swarm"]["data_path_port"] = 7946
    problems = problems_of(data)
    for prefix in ("name: ", "network.gateway: ", "nodes[2].ip: ", "nodes[1].distro: ",
                   "rootless.users[0]: ", "swarm.data_path_port: "):
        assert any(p.startswith(prefix) for p in problems), (prefix, problems)
    assert len(problems) == 6, problems


def test_schema_problems_are_all_reported_at_once() -> None:
    data = base()
    data["nodes"][0]["role"] = "boss"
    data["nodes"][1]["cpus"] = 100
    data["firewall"]["backend"] = "pf"
    data["extra"] = 1
    problems = problems_of(data)
    for prefix in ("nodes[0].role: ", "nodes[1].cpus: ", "firewall.backend: ", "extra: "):
        assert any(p.startswith(prefix) for p in problems), (prefix, problems)
    assert len(problems) == 4, problems


def test_label_problem_reported_even_when_node_ip_is_invalid() -> None:
    data = base()
    data["nodes"][0]["ip"] = "not-an-ip"
    data["nodes"][0]["labels"] = {"-bad": "x"}
    problems = problems_of(data)
    assert any(p.startswith("nodes[0].ip: ") for p in problems), problems
    assert any(p.startswith("nodes[0].labels: ") for p in problems), problems


# ---------------------------------------------------------------------------- warnings, sources


def _with_distros(source: str, *distros: str) -> LabSpec:
    data = base()
    data["docker"]["source"] = source
    for node, distro in zip(data["nodes"], distros, strict=True):
        node["distro"] = distro
    return parse_spec(yaml.safe_dump(data))


@pytest.mark.parametrize("source", ["distro", "auto"])
def test_warnings_report_debian12_distro_gap(source: str) -> None:
    spec = _with_distros(source, "debian-13", "debian-12", "ubuntu-24.04")
    warnings = spec.warnings()
    assert len(warnings) == 1, warnings
    w = warnings[0]
    assert w.startswith("nodes[1] (node2): debian-12 ")
    assert "buildx" in w
    assert "compose" in w
    assert "docker.source: official" in w


def test_no_warnings_with_official_source() -> None:
    spec = _with_distros("official", "debian-12", "debian-12", "ubuntu-24.04")
    assert spec.warnings() == []


def test_shipped_specs_have_no_warnings() -> None:
    assert load_spec(LOCAL).warnings() == []
    assert load_spec(VMLAB).warnings() == []


def test_docker_source_auto_resolves_per_distro() -> None:
    spec = _with_distros("auto", "ubuntu-24.04", "debian-13", "manjaro")
    assert [spec.docker_source(n) for n in spec.nodes] == ["official", "distro", "distro"]
    spec = _with_distros("auto", "ubuntu-22.04", "debian-12", "debian-13")
    assert [spec.docker_source(n) for n in spec.nodes] == ["official", "distro", "distro"]


@pytest.mark.parametrize("source", ["official", "distro"])
def test_docker_source_explicit_wins(source: str) -> None:
    spec = _with_distros(source, "ubuntu-24.04", "debian-13", "manjaro")
    assert {spec.docker_source(n) for n in spec.nodes} == {source}


def test_node_lookup() -> None:
    spec = load_spec(LOCAL)
    assert spec.node("node2").ip == "10.77.0.12"
    with pytest.raises(KeyError):
        spec.node("node9")


# ---------------------------------------------------------------------------- load_spec


def test_load_spec_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(missing)
    err = info.value
    assert not isinstance(err, OSError)
    assert err.source == str(missing)
    assert err.problems == ["cannot read the spec: No such file or directory"]
    # raised `from None`: no chained OSError traceback
    assert err.__cause__ is None
    assert err.__suppress_context__ is True


def test_load_spec_directory(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    assert info.value.problems[0].startswith("cannot read the spec: ")


def test_load_spec_names_the_file_in_errors(tmp_path: Path) -> None:
    data = base()
    data["nodes"][0]["ip"] = "10.77.0.999"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: invalid lab spec\n  - nodes[0].ip: ")
