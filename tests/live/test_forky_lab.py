"""Debian 14 "forky" (docker.io 28.5.2 from Debian): 1 manager + 2 workers converge, verify,
and a second run changes nothing."""

from __future__ import annotations

import pytest

from .conftest import converge_tests, lab_fixture
from .drift import drift_tests

pytestmark = pytest.mark.live
lab = lab_fixture("forky")


test_up_converges_and_verifies, test_second_up_changes_nothing = converge_tests()


# break each checked state, verify names it, a deploy re-run repairs it (tests/live/drift.py)
test_drift_round, test_after_the_drift_rounds_nothing_changes_even_a_day_later = drift_tests()


def test_nodes_run_docker_28_from_debian(lab):
    for node in lab.spec.nodes:
        version = lab.exec(node.name, "docker", "version", "--format", "{{.Server.Version}}")
        assert version.startswith("28."), version


def test_release_expiry_check_is_off_only_in_the_image_source_line(lab):
    """The image turns the check off for forky's source line; the deploy adds nothing to apt."""
    node = lab.spec.nodes[0].name
    sources = lab.exec(node, "cat", "/etc/apt/sources.list")
    assert "deb [check-valid-until=no] " in sources
    conf = lab.exec(node, "sh", "-c", "cat /etc/apt/apt.conf.d/* 2>/dev/null || true")
    assert "valid-until" not in conf.lower(), conf
