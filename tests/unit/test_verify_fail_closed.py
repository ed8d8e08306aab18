"""Every check of the verification suite (swarmlab/verify/test_*.py), run against nodes whose
every command fails (exit 1, 127 or 255) or whose snapshot could not be read: none passes, and
the only skips are the ones the spec decides (listed literally below)."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
import testinfra
from testinfra.backend.base import BaseBackend

from swarmlab.model.spec import load_spec
from swarmlab.verify import snapshot as shared
from swarmlab.verify import test_docker, test_network, test_security, test_swarm, test_tls

ROOT = Path(__file__).resolve().parents[2]
MODULES = (test_docker, test_network, test_security, test_swarm, test_tls)
FAILURES = [(1, ""), (127, "sh: 1: x: not found"), (255, "ssh: connect to host: Connection refused")]


class FailingBackend(BaseBackend):
    """A node where every command fails with `rc`."""

    NAME = "failing"

    def __init__(self, hostname: str, rc: int, err: str):
        super().__init__(hostname)
        self.rc, self.err = rc, err

    def run(self, command, *args, **kwargs):
        return self.result(self.rc, self.encode(self.get_command(command, *args)), b"", self.err.encode())


def _checks():
    for module in MODULES:
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("test_") and fn.__module__ == module.__name__:
                yield pytest.param(fn, id=f"{module.__name__.rsplit('.', 1)[1]}::{name}")


def _params(fn) -> list[dict]:
    """The parametrizations pytest would give the check (one empty dict when none)."""
    out = [{}]
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == "parametrize":
            names = [n.strip() for n in mark.args[0].split(",")] if isinstance(mark.args[0], str) else mark.args[0]
            values = [v if len(names) > 1 else (v,) for v in mark.args[1]]
            out = [{**o, **dict(zip(names, v, strict=True))} for o in out for v in values]
    return out


def _run(fn, spec, rc: int, err: str, snap_error: bool) -> str:
    """pass | skip: <reason> | fail (raised) for one check on a failing lab."""
    hosts = {n.name: testinfra.host.Host(FailingBackend(n.name, rc, err)) for n in spec.nodes}
    results = {c: shared.Result(c, rc, "", err) for c in shared.COMMANDS}
    snaps = {n.name: shared.Snapshot(n.name, {} if snap_error else results, "SSH lost" if snap_error else "")
             for n in spec.nodes}
    node = spec.managers[0]
    swarm = SimpleNamespace(need=lambda name: None, nets=[o.name for o in spec.swarm.overlays], errors={})
    fixtures = {
        "spec": spec, "node": node, "manager": node, "worker": spec.nodes[-1], "hosts": hosts,
        "host": hosts[node.name], "first_manager": hosts[spec.first_manager.name], "snap": snaps[node.name],
        "snapshots": snaps, "record_property": lambda *a: None, "published_web": SimpleNamespace(errors={}),
        "overlay_pair": (spec.nodes[0], spec.nodes[-1], swarm.nets), "swarm_workloads": swarm,
    }
    outcomes = []
    for params in _params(fn):
        kwargs = {**fixtures, **params}
        test_security._FACTS.clear()
        try:
            fn(**{k: kwargs[k] for k in inspect.signature(fn).parameters})
        except pytest.skip.Exception as e:
            outcomes.append(f"skip: {e.msg}")
        except BaseException:  # noqa: BLE001 - any failure or error is what we want here
            outcomes.append("fail")
        else:
            outcomes.append(f"pass {params}")
    return "; ".join(sorted(set(outcomes)))


# checks the spec itself skips on these labs (not a read that failed)
SPEC_SKIPS = {
    "test_netplan_file": "skip: debian-13 uses NetworkManager, not netplan",
    "test_overlay_traffic_across_nodes_by_ip_and_name":
        "skip: every attachable overlay in the spec is encrypted (checked separately)",
}


def _refused(*args, **kwargs):
    raise ConnectionRefusedError(111, "Connection refused")


@pytest.mark.parametrize(("rc", "err"), FAILURES)
@pytest.mark.parametrize("snap_error", [False, True], ids=["snapshot-failed-commands", "snapshot-unreadable"])
@pytest.mark.parametrize("fn", list(_checks()))
def test_no_verify_check_passes_on_a_lab_whose_reads_fail(fn, rc, err, snap_error, monkeypatch):
    monkeypatch.setattr("socket.create_connection", _refused)  # no traffic leaves this machine
    spec = load_spec(ROOT / "tests" / "live" / "labs" / "secure.yaml")
    outcome = _run(fn, spec, rc, err, snap_error)
    assert "pass" not in outcome.split(":")[0], outcome
    if outcome.startswith("skip"):
        assert SPEC_SKIPS.get(fn.__name__) == outcome, outcome


def test_a_lab_without_swarm_skips_the_swarm_checks_with_the_reason(monkeypatch):
    """`swarm.enabled: false`: every swarm check (and the CIS swarm section) skips, saying so."""
    import yaml

    from swarmlab.model.spec import parse_spec
    from swarmlab.verify.workloads import NO_SWARM, SwarmWorkloads

    monkeypatch.setattr("socket.create_connection", _refused)
    data = yaml.safe_load((ROOT / "labs" / "local.yaml").read_text())
    data["swarm"] = {"enabled": False}
    spec = parse_spec(yaml.safe_dump(data))
    swarm_checks = [p.values[0] for p in _checks() if p.values[0].__module__.endswith("test_swarm")]
    swarm_checks += [test_security.test_cis_swarm, test_network.test_swarm_ports_reachable_from_another_lab_node]
    with pytest.raises(pytest.skip.Exception, match="swarm.enabled is false"):
        test_swarm.require_swarm(spec)  # the module's autouse fixture calls it before each check
    assert "_swarm_enabled" in vars(test_swarm)
    for fn in swarm_checks[-2:]:
        assert _run(fn, spec, 0, "", False) == f"skip: {NO_SWARM}", fn.__name__
    hosts = {n.name: None for n in spec.nodes}
    workloads = SwarmWorkloads(spec, hosts, probe=None)
    for name in ("overlay", "dnsrr", "stack"):
        with pytest.raises(pytest.skip.Exception, match="swarm.enabled is false"):
            workloads.need(name)


@pytest.mark.parametrize(("output", "rc", "outcome"), [
    ("overlay loaded\nbr_netfilter missing\n", 0, "skip"),
    ("overlay loaded\nbr_netfilter loadable\n", 0, "fail"),
    ("overlay loaded\nbr_netfilter loaded\n", 0, "ok"),
    ("", 0, "fail"),  # no line for the module: not a reason to skip
    ("br_netfilter missing\n", 255, "fail"),  # the read failed
    ("", 127, "fail"),
])
def test_kernel_requirement_tells_missing_from_not_loaded(output, rc, outcome):
    from swarmlab.verify.conftest import require_kernel

    snap = shared.Snapshot("n1", {shared.KERNEL_MODULES: shared.Result(shared.KERNEL_MODULES, rc, output, "")})
    try:
        require_kernel(snap, "br_netfilter")
    except pytest.skip.Exception as e:
        assert outcome == "skip" and "no br_netfilter" in e.msg
    except (AssertionError, pytest.fail.Exception):
        assert outcome == "fail"
    else:
        assert outcome == "ok"
