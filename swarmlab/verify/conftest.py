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

from swarmlab.control.inventory import lab_groups, spec_path
from swarmlab.control.parallel import on_each
from swarmlab.control.sshconfig import testinfra_hosts
from swarmlab.model.spec import LabSpec, NodeSpec, load_spec
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


def kernel_state(host, module: str) -> str:
    """`loaded`, `loadable` or `missing` (KernelModules, the deploy's own read) for `module` on
    the node (`host`: a testinfra host or the node's Snapshot); a failed read fails the check."""
    from swarmlab.verify.cis import parse_kernel
    from swarmlab.verify.snapshot import KERNEL_MODULES

    result = host.run(KERNEL_MODULES)
    state = parse_kernel(result.stdout).get(module) if result.rc == 0 else None
    if state is None:
        pytest.fail(f"could not read the kernel's {module} state on {_name(host)} "
                    f"(exit {result.rc}): {(result.stderr or result.stdout).strip()[:300]}")
    return state


def require_kernel(host, module: str) -> None:
    """Skip (with the reason) only where the node's kernel has no `module` and cannot load it;
    a module the kernel could load but that is not loaded fails: the deploy loads it."""
    from swarmlab.provision.kernel import MODULE_FEATURES

    state = kernel_state(host, module)
    if state == "missing":
        pytest.skip(f"kernel has no {module} on {_name(host)}: {MODULE_FEATURES[module]} cannot work here")
    assert state == "loaded", (
        f"{module} is loadable but not loaded on {_name(host)}: {MODULE_FEATURES[module]} does "
        "not work until the deploy loads it"
    )


def _name(host) -> str:
    return host.name if isinstance(host, Snapshot) else host.backend.hostname


def other_node(spec: LabSpec, node: NodeSpec, why: str) -> NodeSpec:
    """Another lab node to test from; a single-node lab skips with the reason."""
    others = [n for n in spec.nodes if n.name != node.name]
    if not others:
        pytest.skip(f"single-node lab: no other lab node to {why}")
    return others[0]
