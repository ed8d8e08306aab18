"""CIS Docker Benchmark 1.6.0 checks (sections 2, 3, 7) on the lab's nodes, natively.

Each check records its result as the JUnit property `security` (`pass`, `lab choice` or
`fail`, with `security_node` and `security_finding`): a lab choice passes and names the spec
field that changes it, a failure fails. `swarmlab/verify/cis.py` holds the checks.
"""

from __future__ import annotations

import time

import pytest

from swarmlab.model.spec import LabSpec, NodeSpec
from swarmlab.provision.autolock import key_path
from swarmlab.verify import cis as security
from swarmlab.verify import snapshot as shared
from swarmlab.verify.snapshot import Snapshot
from swarmlab.verify.workloads import NO_SWARM

_FACTS: dict[str, security.Facts] = {}


def _facts(host, spec: LabSpec, node: NodeSpec, snap: Snapshot) -> security.Facts:
    """The node's facts, read once per run (per xdist worker); the reads the session's
    snapshot already holds come from it. A read that fails fails the checks that need it."""
    if node.name not in _FACTS:
        def run(command: str) -> tuple[int, str]:
            result = snap.results.get(command) or host.run(command)
            return result.rc, result.stdout

        manager = node.role == "manager" and spec.swarm.enabled
        facts = security.collect(run, manager, shared.KERNEL_MODULES)
        if manager:
            rc, pem = run("docker swarm ca")
            facts.ca_days_left = security.ca_days_left(pem) if rc == 0 else None
            path = key_path(spec)
            if path.exists():
                facts.key_age_days = (time.time() - path.stat().st_mtime) / 86400
        _FACTS[node.name] = facts
    return _FACTS[node.name]


def _judge(finding: security.Finding, node: str, record_property) -> None:
    record_property("security", finding.status)
    record_property("security_node", node)
    record_property("security_finding", finding.line(node))
    assert finding.status != security.FAIL, finding.line(node)


@pytest.mark.parametrize("cis", security.checks_for("node"))
def test_cis_daemon_and_files(cis, spec, node, host, snap, record_property):
    """Sections 2 and 3 (and 7.9) on every node."""
    _judge(security.evaluate(cis, spec, node, _facts(host, spec, node, snap)), node.name, record_property)


@pytest.mark.parametrize("cis", security.checks_for("manager"))
def test_cis_swarm(cis, spec, manager, hosts, snapshots, record_property):
    """Section 7 on every manager."""
    if not spec.swarm.enabled:
        pytest.skip(NO_SWARM)
    facts = _facts(hosts[manager.name], spec, manager, snapshots[manager.name])
    _judge(security.evaluate(cis, spec, manager, facts), manager.name, record_property)
