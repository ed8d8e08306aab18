"""The fact batch (many facts, one command) and the per-run cache kept until the host changes."""

from __future__ import annotations

import subprocess

from deployfakes import LOCAL, VMLAB
from pyinfra.facts.files import File, FileContents, Sha1File
from pyinfra.facts.hardware import Ipv4Addrs, NetworkDevices
from pyinfra.facts.server import LinuxDistribution

from swarmlab.model.distros import DISTROS
from swarmlab.model.spec import load_spec
from swarmlab.provision import factcache
from swarmlab.provision.factcache import MARK, FactBatch, fact_key
from swarmlab.provision.facts import DockerDaemonState, KernelModules, SwarmInfo
from swarmlab.provision.prefetch import FACT_SETS, lab_facts
from swarmlab.provision.ufw import UfwStatus


def _run(command) -> list[str]:
    text = command.get_raw_value()
    out = subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def test_batch_runs_each_fact_and_parses_it_with_its_own_class(tmp_path):
    conf = tmp_path / "a file.conf"  # a space: the path must reach the shell quoted
    conf.write_text("one\ntwo\n")
    batch = FactBatch()
    requests = ((FileContents, {"path": str(conf)}), (Sha1File, {"path": str(conf)}),
                (File, {"path": str(tmp_path / "absent")}))
    values = batch.process(_run(batch.command(requests)))
    assert values[0] == ["one", "two"]
    assert values[1] == __import__("hashlib").sha1(b"one\ntwo\n").hexdigest()
    assert values[2] is None  # File of a missing path


def test_batch_leaves_out_failed_parts_and_missing_commands():
    batch = FactBatch()
    batch.command(((UfwStatus, {}), (FileContents, {"path": "/x"})))
    out = [f"{MARK} B 0", f"{MARK} M 0", f"{MARK} B 1", "oops", f"{MARK} R 1 2"]
    assert batch.process(out) == {}


def test_batch_keeps_a_last_line_without_newline():
    batch = FactBatch()
    batch.command(((FileContents, {"path": "/x"}),))
    assert batch.process([f"{MARK} B 0", "a", f"b{MARK} R 0 0"]) == {0: ["a", "b"]}


def test_hostile_path_is_quoted_in_the_batch(tmp_path):
    hostile = "/tmp/x'; touch " + str(tmp_path / "pwned") + "; echo '"
    batch = FactBatch()
    _run(batch.command(((FileContents, {"path": hostile}),)))
    assert not (tmp_path / "pwned").exists()


class _Meta:
    def __init__(self, changed: bool) -> None:
        self.changed = changed

    def is_complete(self) -> bool:
        return True

    def did_change(self) -> bool:
        return self.changed


class _OpData:
    def __init__(self, changed: bool) -> None:
        self.operation_meta = _Meta(changed)


class _State:
    def __init__(self) -> None:
        self.ops: dict = {}


class _Host:
    name = "node1"

    def __init__(self, answers: dict) -> None:
        self.state = _State()
        self.state.ops[self] = {}
        self.answers = answers
        self.reads: list = []

    def get_fact(self, cls, *args, **kwargs):
        self.reads.append(cls)
        if cls is FactBatch:
            return {i: self.answers[c] for i, (c, _) in enumerate(kwargs["requests"])
                    if c in self.answers}
        return self.answers.get(cls)

    def __hash__(self) -> int:
        return id(self)


def test_declared_facts_are_read_once_until_an_operation_changes_the_host():
    host = _Host({KernelModules: {"vxlan": "loaded"}, LinuxDistribution: {"name": "Debian"},
                  NetworkDevices: {"eth0": {"ipv4": {"address": "10.0.0.5"}}}})
    factcache.declare([(KernelModules, {}), (LinuxDistribution, {}), (NetworkDevices, {})], host=host)
    assert host.get_fact(KernelModules) == {"vxlan": "loaded"}
    assert host.get_fact(LinuxDistribution) == {"name": "Debian"}
    assert host.get_fact(Ipv4Addrs) == {"eth0": ["10.0.0.5"]}  # derived from the batch's answer
    factcache.declare([(SwarmInfo, {})], host=host)  # a derived fact: its base is declared
    assert fact_key(DockerDaemonState, (), {}) in factcache._cache(host).pending
    assert host.reads == [FactBatch]
    host.get_fact(KernelModules)["vxlan"] = "changed by a caller"
    assert host.get_fact(KernelModules) == {"vxlan": "loaded"}  # callers get copies
    host.state.ops[host]["op1"] = _OpData(changed=False)
    host.get_fact(KernelModules)
    assert host.reads == [FactBatch]  # an operation that changed nothing keeps the answers
    host.state.ops[host]["op2"] = _OpData(changed=True)
    host.answers[KernelModules] = {"vxlan": "missing"}
    assert host.get_fact(KernelModules) == {"vxlan": "missing"}  # read again, alone
    assert host.reads == [FactBatch, KernelModules]
    factcache.invalidate(host)
    host.get_fact(KernelModules)
    assert host.reads == [FactBatch, KernelModules, KernelModules]


def test_a_change_on_another_host_drops_the_answers_too():
    """A worker's join changes the manager's member list: the manager must not decide the
    reconcile from members read before the join (live: a stale Down entry was left)."""
    manager = _Host({KernelModules: {"vxlan": "loaded"}})
    worker = _Host({})
    worker.state = manager.state
    manager.state.ops[worker] = {}
    factcache.declare([(KernelModules, {})], host=manager)
    assert manager.get_fact(KernelModules) == {"vxlan": "loaded"}
    manager.state.ops[worker]["join"] = _OpData(changed=False)
    manager.get_fact(KernelModules)
    assert manager.reads == [FactBatch]  # nothing changed anywhere: the answer is kept
    manager.state.ops[worker]["join"] = _OpData(changed=True)
    manager.answers[KernelModules] = {"vxlan": "missing"}
    assert manager.get_fact(KernelModules) == {"vxlan": "missing"}
    assert manager.reads == [FactBatch, KernelModules]


def test_lab_facts_cover_every_step_of_both_labs():
    # what deploys/swarm.py imports: each concern registers its fact set at import
    from swarmlab.provision import docker, firewall, kernel, lab_packages, network, rootless, swarm, tls  # noqa: F401

    assert {m.rsplit(".", 1)[-1] for m in FACT_SETS} == {
        "packages", "kernel", "network", "docker", "tls", "rootless", "firewall", "swarm"}
    for path in (LOCAL, VMLAB):
        spec = load_spec(path)
        for node in spec.nodes:
            names = {cls.__name__ for cls, _ in lab_facts(spec, node, DISTROS[node.distro])}
            assert {"LinuxDistribution", "KernelModules", "LabLink", "DockerDaemonState"} <= names
            assert ("RootlessUser" in names) == bool(spec.rootless.users)
            assert ("OverlayNetworks" in names) == (node.name == spec.first_manager.name)
