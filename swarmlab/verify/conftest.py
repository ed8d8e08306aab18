"""testinfra verification of a live lab: hosts come from the spec (SWARMLAB_SPEC) via the
same inventory pyinfra uses, so the suite runs against any spec's hosts.

    SWARMLAB_SPEC=lab.yaml pytest swarmlab/verify
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import testinfra

from swarmlab.inventory import lab_groups, spec_path
from swarmlab.parallel import on_each
from swarmlab.spec import LabSpec, NodeSpec, load_spec
from swarmlab.sshconfig import testinfra_hosts
from swarmlab.verify.probe import Probe
from swarmlab.verify.snapshot import Snapshot
from swarmlab.verify.workloads import Workloads


@pytest.fixture(scope="session")
def spec() -> LabSpec:
    return load_spec(spec_path())


@pytest.fixture(scope="session")
def hosts(spec: LabSpec) -> dict[str, testinfra.host.Host]:
    managers, workers = lab_groups()
    out, config = testinfra_hosts(managers + workers)
    trace = os.environ.get("SWARMLAB_VERIFY_TRACE")
    if trace:
        for name, host in out.items():
            _trace_commands(host, name, Path(trace))
    yield out
    config.unlink(missing_ok=True)


def _trace_commands(host: testinfra.host.Host, name: str, path: Path) -> None:
    """Append one JSON line per command the host runs (host, seconds, command) to `path`:
    `SWARMLAB_VERIFY_TRACE=file swarmlab verify` counts the SSH commands per host."""
    backend = host.backend
    run = backend.run

    def traced(command: str, *args, **kwargs):
        start = time.monotonic()
        try:
            return run(command, *args, **kwargs)
        finally:
            line = {"host": name, "s": round(time.monotonic() - start, 3),
                    "cmd": backend.get_command(command, *args)[:200]}
            with path.open("a") as f:
                f.write(json.dumps(line) + "\n")

    backend.run = traced


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `node` over every spec node, `manager` over managers."""
    if {"node", "manager", "worker"} & set(metafunc.fixturenames):
        spec = load_spec(spec_path())
        for fixture, nodes in (("node", spec.nodes), ("manager", spec.managers),
                               ("worker", spec.workers)):
            if fixture in metafunc.fixturenames:
                metafunc.parametrize(fixture, nodes, ids=[n.name for n in nodes])


@pytest.fixture
def host(hosts, node: NodeSpec) -> testinfra.host.Host:
    """The testinfra host of the `node` under test (tests using it run once per node)."""
    return hosts[node.name]


@pytest.fixture(scope="session")
def snapshots(hosts) -> dict[str, Snapshot]:
    """The shared read-only commands (swarmlab/verify/snapshot.py), once per host, all hosts at
    once, before any check of this session runs."""
    names = list(hosts)
    return dict(zip(names, on_each(lambda n: Snapshot.take(n, hosts[n]), names), strict=True))


@pytest.fixture
def snap(snapshots, node: NodeSpec) -> Snapshot:
    """The snapshot of the `node` under test."""
    return snapshots[node.name]


@pytest.fixture(scope="session")
def first_manager(spec: LabSpec, hosts):
    return hosts[spec.first_manager.name]


@pytest.fixture(scope="session")
def probe(spec: LabSpec, hosts) -> Probe:
    """A tiny probe image on every node, built from the node's own packages; cleaned up after."""
    p = Probe(spec, hosts)
    p.build_everywhere()
    yield p
    p.cleanup()


@pytest.fixture(scope="session")
def workloads(spec: LabSpec, hosts, probe) -> Workloads:
    """Every probe workload (swarmlab/verify/workloads.py), started at once when the first
    check that needs one runs: after all the state checks (the items are sorted so)."""
    w = Workloads(spec, hosts, probe)
    w.start()
    yield w
    w.stop()


# fixtures that start containers, services or networks on the nodes: tests using them run
# after the checks that read rules and state (Docker rewrites its chains whenever an endpoint
# changes, so a read during a workload could see a half-written chain)
WORKLOAD_FIXTURES = {"probe", "workloads"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "workload: starts probe workloads (second verify phase)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the checks that use a workload, and run them after every other check."""
    for item in items:
        if WORKLOAD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.workload)
    items.sort(key=lambda item: item.get_closest_marker("workload") is not None)


def require_kernel(host, feature: str, marker: str, what: str) -> None:
    """Skip (never pass silently) when the node's kernel lacks a feature (`host`: a testinfra
    host or the node's Snapshot, which holds every marker's result).

    The markers exit 1 when the feature is absent; any other failure (SSH lost: 255, a
    missing command: 127) is an error of the check, not a reason to skip.
    """
    result = host.run(marker)
    if result.rc == 0:
        return
    if result.rc == 1:
        pytest.skip(f"kernel has no {feature} on {_name(host)}: {what} cannot work here")
    pytest.fail(
        f"could not check {feature} on {_name(host)} (exit {result.rc}): "
        f"{(result.stderr or result.stdout).strip()[:300]}"
    )


def _name(host) -> str:
    return host.name if isinstance(host, Snapshot) else host.backend.hostname


def other_node(spec: LabSpec, node: NodeSpec, why: str) -> NodeSpec:
    """Another lab node to test from; a single-node lab skips with the reason."""
    others = [n for n in spec.nodes if n.name != node.name]
    if not others:
        pytest.skip(f"single-node lab: no other lab node to {why}")
    return others[0]
