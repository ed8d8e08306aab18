"""The distro table: rows built by keyword, and the Vagrant data read from platform.json."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from swarmlab.model.distros import APT_DISTROS, DISTROS, DOCKER_PACKAGES, ROOTLESS_TOOLS, Distro

PLATFORM_JSON = Path(__file__).resolve().parents[2] / "swarmlab" / "data" / "platform.json"


def test_rows_are_built_by_keyword_only() -> None:
    with pytest.raises(TypeError):
        Distro("x", "y", "1", "c", "apt", "distro", "netplan", "ufw", "img")  # type: ignore[misc]


@pytest.mark.parametrize(("key", "expected"), [
    ("ubuntu-24.04", dict(os_id="ubuntu", version_id="24.04", codename="noble", family="apt",
                          default_docker_source="official", network_backend="netplan",
                          firewall_backend="ufw", node_image_base="ubuntu:24.04")),
    ("debian-14", dict(os_id="debian", version_id="14", codename="forky", family="apt",
                       default_docker_source="distro", network_backend="netplan",
                       firewall_backend="ufw", node_image_base="debootstrap:forky")),
    ("manjaro", dict(os_id="manjaro", version_id="", codename="", family="pacman",
                     default_docker_source="distro", network_backend="networkmanager",
                     firewall_backend="nftables", node_image_base="manjarolinux/base")),
])
def test_rows(key: str, expected: dict[str, str]) -> None:
    row = DISTROS[key]
    assert {f.name: getattr(row, f.name) for f in fields(row)} == {"key": key, **expected}


def test_official_source_exists_for_every_apt_distro_only() -> None:
    assert APT_DISTROS == ("ubuntu-22.04", "ubuntu-24.04", "debian-12", "debian-13", "debian-14")
    official = {k for k, source in DOCKER_PACKAGES if source == "official"}
    assert official == set(APT_DISTROS) == {k for k, source in ROOTLESS_TOOLS if source == "official"}
    assert ROOTLESS_TOOLS[("debian-12", "official")].script_dir == "/usr/bin"


def test_every_distro_has_a_vagrant_box() -> None:
    """The Vagrantfile (Ruby) reads boxes and memory from platform.json, keyed like DISTROS."""
    boxes = json.loads(PLATFORM_JSON.read_text())["vagrant_boxes"]
    assert set(boxes) == set(DISTROS)
    assert all(isinstance(b["box"], str) and b["memory"] >= 1024 for b in boxes.values())
