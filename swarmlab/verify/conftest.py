"""testinfra verification of a live lab: hosts come from the spec (SWARMLAB_SPEC) via the
same inventory pyinfra uses, so the suite runs against any spec's hosts.

    SWARMLAB_SPEC=lab.yaml pytest swarmlab/verify
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import testinfra

from swarmlab.inventory import lab_groups, spec_path
from swarmlab.spec import LabSpec, NodeSpec, load_spec
from swarmlab.verify.probe import Probe


def _ssh_config(entries: list[tuple[str, dict]]) -> Path:
    lines = []
    for name, data in entries:
        lines += [f"Host {name}", f"  HostName {data['ssh_hostname']}"]
        if data.get("ssh_port"):
            lines.append(f"  Port {data['ssh_port']}")
        if data.get("ssh_user"):
            lines.append(f"  User {data['ssh_user']}")
        if data.get("ssh_key"):
            lines.append(f"  IdentityFile {data['ssh_key']}")
        if data.get("ssh_strict_host_key_checking") == "off":
            lines += ["  StrictHostKeyChecking no", "  UserKnownHostsFile /dev/null"]
        # one SSH connection per host for the whole run (testinfra sets ControlMaster only)
        lines += ["  LogLevel ERROR", "  ControlPath /tmp/swarmlab-cm-%C", ""]
    fd, path = tempfile.mkstemp(prefix="swarmlab-ssh-", suffix=".config")
    Path(path).write_text("\n".join(lines))
    return Path(path)


@pytest.fixture(scope="session")
def spec() -> LabSpec:
    return load_spec(spec_path())


@pytest.fixture(scope="session")
def hosts(spec: LabSpec) -> dict[str, testinfra.host.Host]:
    managers, workers = lab_groups()
    config = _ssh_config(managers + workers)
    out = {
        name: testinfra.get_host(f"ssh://{name}?ssh_config={config}&controlpersist=120&sudo=true")
        for name, _ in managers + workers
    }
    yield out
    config.unlink(missing_ok=True)


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
def first_manager(spec: LabSpec, hosts):
    return hosts[spec.first_manager.name]


@pytest.fixture(scope="session")
def probe(spec: LabSpec, hosts) -> Probe:
    """A tiny probe image on every node, built from the node's own packages; cleaned up after."""
    p = Probe(spec, hosts)
    p.build_everywhere()
    yield p
    p.cleanup()


def require_kernel(host, feature: str, marker: str, what: str) -> None:
    """Skip (never pass silently) when the node's kernel lacks a feature."""
    if not host.run(marker).succeeded:
        pytest.skip(f"kernel has no {feature} on {host.backend.hostname}: {what} cannot work here")
