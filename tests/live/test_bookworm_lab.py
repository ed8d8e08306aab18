"""Debian 12 with distro packages: a clear per-host failure, never compose v1."""

from __future__ import annotations

import pytest

from .conftest import lab_fixture

pytestmark = pytest.mark.live
lab = lab_fixture("bookworm")


def test_debian12_distro_source_fails_clearly(lab):
    run = lab.run("up")
    assert run.rc != 0
    text = run.out + run.err
    assert "packages lack buildx, compose v2" in text  # spec warning, before any host is touched
    assert "docker.source: official" in text
    assert run.summary["failed"] == 1
    assert "Debian 12 does not package docker-buildx" in text, text
    # compose v1 was never installed
    assert lab.exec("b1", "sh", "-c", "command -v docker-compose || echo absent").strip() == "absent"
