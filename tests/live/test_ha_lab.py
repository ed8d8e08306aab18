"""Three managers: all reachable, and the cluster stays writable with one manager down."""

from __future__ import annotations

import time

import pytest

from .conftest import lab_fixture

pytestmark = pytest.mark.live
lab = lab_fixture("ha")


def test_three_manager_lab_converges_and_verifies(lab):
    run = lab.run("up")
    assert run.rc == 0, run.out + run.err
    s = run.summary
    assert s["failed"] == 0 and s["verified"] == s["total"]
    again = lab.run("deploy", "--no-verify")
    assert again.summary["changed"] == 0, again.out


def test_cluster_writable_with_one_manager_down(lab):
    h1, h2, h3 = (n.name for n in lab.spec.nodes)
    lab.exec(h3, "systemctl", "stop", "docker.socket", "docker.service")
    try:
        deadline = time.monotonic() + 60
        while True:
            out = lab.exec(h1, "docker", "network", "create", "-d", "overlay", "ha-write-test", check=False)
            if out.strip():
                break
            assert time.monotonic() < deadline, "cluster not writable with one manager down"
            time.sleep(2)
        assert "ha-write-test" in lab.exec(h2, "docker", "network", "ls", "--format", "{{.Name}}")
    finally:
        lab.exec(h1, "docker", "network", "rm", "ha-write-test", check=False)
        lab.exec(h3, "systemctl", "start", "docker")
