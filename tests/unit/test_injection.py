"""No spec or host value reaches a shell unquoted (issue #12).

Property: shell metacharacters put into any string of the spec (every value, and the keys of
the free-form mappings) either get the spec refused, naming that field, or appear in the
generated commands only inside quotes. The commands are the real deploys' (the whole lab:
kernel, packages, network, Docker, rootless, firewall, swarm), produced offline from recorded
facts by the deployfakes harness, for the first manager (init, reconcile, overlays) and a
worker (join).
"""

from __future__ import annotations

import copy
import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deployfakes import LOCAL, recorded, rootless_scripts, run_deploy
from pyinfra.api import deploy
from pyinfra.facts.hardware import Ipv4Addrs
from pyinfra.facts.server import Command, Users

from swarmlab.model.spec import SpecError, load_spec, parse_spec
from swarmlab.provision.docker import install_docker
from swarmlab.provision.facts import OverlayNetworks, SwarmInfo, SwarmNodes
from swarmlab.provision.firewall import swarm_firewall
from swarmlab.provision.kernel import kernel_prerequisites
from swarmlab.provision.lab_packages import lab_packages
from swarmlab.provision.network import static_address
from swarmlab.provision.rootless import STATE_FILE, rootless_docker
from swarmlab.provision.shell import argv
from swarmlab.provision.swarm import form_swarm, reconcile_commands

MARK = "PWNED"
PAYLOADS = [
    f"a;{MARK}",
    f"$({MARK})",
    f"`{MARK}`",
    f"x' {MARK} '",  # breaks out of naive single quotes
    f"a|{MARK}&",
    f'a" {MARK} "',
]
TOKEN = "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx"

# every optional string field filled in, so each one is exercised
FULL: dict[str, Any] = yaml.safe_load(LOCAL.read_text())
FULL["docker"].update(version="26.1.5+dfsg1-9", log_opts={"max-size": "10m", "tag": "lab"},
                      daemon={"data-root": "/var/lib/docker"})
FULL["swarm"]["overlays"][0]["labels"] = {"purpose": "test"}
for _node in FULL["nodes"]:
    _node.update(interface="eth0", box="debian/trixie64")
FREE_FORM = {"labels", "log_opts", "daemon"}  # mappings whose keys come from the user


def string_paths(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """(path, kind) of every string: kind "value", or "key" for a key of a free-form mapping."""
    if isinstance(value, dict):
        for key, item in value.items():
            if path and path[-1] in FREE_FORM:
                yield (*path, key), "key"
            yield from string_paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from string_paths(item, (*path, i))
    elif isinstance(value, str):
        yield path, "value"


def with_payload(path: tuple, kind: str, payload: str) -> dict:
    data = copy.deepcopy(FULL)
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if kind == "key":
        parent[payload] = parent.pop(path[-1])
    else:
        parent[path[-1]] = payload
    return data


def loc(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def active_text(command: str) -> str:
    """What the shell interprets in `command`: single-quoted text and backslash-escaped
    characters are dropped; the script of each `-c` argument (sh -c '...') is added, checked
    the same way."""
    out: list[str] = []
    i, in_double = 0, False
    while i < len(command):
        c = command[i]
        if c == "\\":
            out.append("_")
            i += 2
            continue
        if c == "'" and not in_double:
            end = command.find("'", i + 1)
            if end < 0:  # unbalanced: everything after is suspect
                out.append(command[i:])
                break
            out.append("Q")
            i = end + 1
            continue
        if c == '"':
            in_double = not in_double
        out.append(c)
        i += 1
    text = "".join(out)
    try:
        words = shlex.split(command)
    except ValueError:
        return text + command  # cannot be parsed: treat it all as active
    for before, word in zip(words, words[1:], strict=False):
        if before == "-c":
            text += "\n" + active_text(word)
    return text


def test_active_text_sees_unquoted_payloads() -> None:
    # the checker itself: naive commands are caught, quoted ones pass
    for payload in PAYLOADS:
        naive = (f"docker node update --label-add zone={payload} abc",
                 f"docker node update --label-add 'zone={payload}' abc")
        assert any(MARK in active_text(c) for c in naive), payload
        assert MARK not in active_text(argv("docker", "node", "update", "--label-add",
                                            f"zone={payload}", "abc"))
        nested = [f"sudo -u x sh -c {shlex.quote(script)}"
                  for script in (f"rm -f /home/{payload}/x", f"rm -f '/home/{payload}/x'")]
        assert any(MARK in active_text(c) for c in nested), payload
        assert MARK not in active_text(
            f"sudo -u x sh -c {shlex.quote(argv('rm', '-f', f'/home/{payload}/x'))}")


def swarm_nodes(ids: dict[str, str] | None = None) -> str:
    """`docker node inspect` lines: the spec's nodes, ready, without labels."""
    ids = ids or {"node1": "aaa111", "node2": "bbb222", "node3": "ccc333"}
    return "\n".join(json.dumps({
        "ID": nid, "Spec": {"Labels": {}, "Role": "worker", "Availability": "active"},
        "Description": {"Hostname": name}, "Status": {"State": "ready", "Addr": "10.77.0.99"},
    }) for name, nid in ids.items()) + "\n"


@deploy("Whole lab")
def whole_lab() -> None:
    """deploys/swarm.py as one deploy function."""
    kernel_prerequisites()
    lab_packages()
    static_address()
    install_docker()
    rootless_docker()
    swarm_firewall()
    form_swarm()


MANAGER_ACTIVE = ('{"NodeID":"aaa111","LocalNodeState":"active","ControlAvailable":true,'
                  '"RemoteManagers":[{"NodeID":"aaa111","Addr":"10.77.0.11:2377"}]}')
INACTIVE = '{"NodeID":"","LocalNodeState":"inactive","RemoteManagers":null}'


def lab_commands(spec_path: Path) -> list[str]:
    """Raw commands (as sent to the hosts) of the whole lab deploy on node1 and node2."""
    peers = {"node1": {(Command, "docker swarm join-token -q worker"): TOKEN + "\n",
                       (Command, "docker swarm join-token -q manager"): TOKEN + "\n"}}
    manager = run_deploy(whole_lab, spec_path, "node1", {
        Ipv4Addrs: {"eth0": ["10.77.0.11"]},
        **rootless_scripts(),  # Docker's rootless scripts are installed
        SwarmInfo: recorded(SwarmInfo, MANAGER_ACTIVE),
        SwarmNodes: recorded(SwarmNodes, swarm_nodes()),
        OverlayNetworks: {},
    })
    worker = run_deploy(whole_lab, spec_path, "node2", {
        Ipv4Addrs: {"eth0": ["10.77.0.12"]},
        **rootless_scripts(),
        SwarmInfo: recorded(SwarmInfo, INACTIVE),
    }, peers=peers)
    assert not manager.failed and not worker.failed
    return manager.raw_commands + worker.raw_commands + [c for _, c, _, _ in worker.shell]


def test_full_spec_is_valid_and_generates_the_commands_checked(tmp_path: Path) -> None:
    path = tmp_path / "full.yaml"
    path.write_text(yaml.safe_dump(FULL))
    cmds = lab_commands(path)
    joined = "\n".join(cmds)
    for expected in ("docker node update --label-add zone=a --label-add swarmlab.labels=zone aaa111",
                     "docker network create --driver overlay --subnet 10.30.0.0/24 "
                     "--attachable --label purpose=test labnet",
                     "networkctl reconfigure eth0", "docker swarm join --token SWMTKN-1-",
                     "docker swarm join-token -q worker", "loginctl enable-linger alice"):
        assert expected in joined, expected


CASES = [(path, kind, payload) for path, kind in string_paths(FULL) for payload in PAYLOADS]


@pytest.mark.parametrize(("path", "kind", "payload"), CASES,
                         ids=[f"{loc(p)}:{k}:{i % len(PAYLOADS)}" for i, (p, k, _) in
                              enumerate(CASES)])
def test_metacharacters_are_refused_or_quoted(tmp_path: Path, path: tuple, kind: str,
                                              payload: str) -> None:
    data = with_payload(path, kind, payload)
    text = yaml.safe_dump(data, sort_keys=False)
    try:
        parse_spec(text)
    except SpecError as err:
        field = loc(path[:-1] if kind == "key" else path)
        assert any(p.startswith(f"{field}: ") or p.startswith(f"{field}.") or
                   p.startswith(f"{field}[") for p in err.problems), (field, err.problems)
        return
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(text)
    for cmd in lab_commands(spec_path):
        assert MARK not in active_text(cmd), f"unquoted {payload!r} from {loc(path)}: {cmd}"


def test_accepted_payloads_do_reach_commands(tmp_path: Path) -> None:
    """Some payloads (label values) are valid: they are quoted, not dropped."""
    data = with_payload(("nodes", 0, "labels", "zone"), "value", PAYLOADS[0])
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    cmds = [c for c in lab_commands(path) if MARK in c]
    assert cmds == [f"docker node update --label-add 'zone=a;{MARK}' --label-add swarmlab.labels=zone aaa111"]


# --------------------------------------------------------------------- host values


def test_node_ids_from_the_swarm_are_quoted() -> None:
    hostile = swarm_nodes({"node1": "aaa111", "node2": f"b;{MARK}", "node3": "ccc333",
                           "gone": f"$({MARK})"})
    nodes = recorded(SwarmNodes, hostile.replace('"State": "ready", "Addr": "10.77.0.99"}}\n',
                                                 '"State": "ready", "Addr": "10.77.0.99"}}\n'))
    nodes[-1]["Status"]["State"] = "down"
    cmds = reconcile_commands(load_spec(LOCAL), nodes)
    assert f"docker node rm --force '$({MARK})'" in cmds
    assert f"docker node update --label-add zone=b --label-add swarmlab.labels=zone 'b;{MARK}'" in cmds
    assert all(MARK not in active_text(c) for c in cmds)


def test_home_directory_from_passwd_is_quoted(tmp_path: Path) -> None:
    """Uninstalling a rootless user removes a unit under its home (a host value)."""
    from pyinfra.facts.files import FileContents

    from swarmlab.provision.rootless import RootlessUser

    data = copy.deepcopy(FULL)
    data["rootless"]["users"] = []
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    home = f"/home/x;{MARK}"
    run = run_deploy(rootless_docker, path, "node1", {
        (FileContents, STATE_FILE): ["alice"],
        Users: {"alice": {"home": home, "uid": 1001, "group": "alice", "groups": []}},
        (RootlessUser, "alice"): {"uid": "1001", "home": home, "unit_file": "1"},
    })
    removal = [c for c in run.raw_commands if ".config/systemd/user/docker.service" in c]
    assert removal and all(MARK not in active_text(c) for c in removal)


# --------------------------------------------------------------------- the join token


def test_join_token_is_read_without_printing_its_output() -> None:
    peers = {"node1": {(Command, "docker swarm join-token -q worker"): TOKEN + "\n"}}
    run = run_deploy(form_swarm, LOCAL, "node2", {SwarmInfo: recorded(SwarmInfo, INACTIVE)},
                     peers=peers)
    assert run.shell == [("node1", "docker swarm join-token -q worker", False, False)]
    assert ("Command", ("docker swarm join-token -q worker",)) not in run.queried
    assert not any(TOKEN in m for _, m in run.logs)


def test_a_token_of_another_shape_is_not_used() -> None:
    peers = {"node1": {(Command, "docker swarm join-token -q worker"): f"x;{MARK}\n"}}
    with pytest.raises(RuntimeError, match="not a SWMTKN token") as err:
        run_deploy(form_swarm, LOCAL, "node2", {SwarmInfo: recorded(SwarmInfo, INACTIVE)},
                   peers=peers)
    assert MARK not in str(err.value)
