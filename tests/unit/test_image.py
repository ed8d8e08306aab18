"""Node image recipes: per-suite additions, debootstrap's script, root through sudo."""

from __future__ import annotations

import pytest
from deployfakes import OS_RELEASE, linux_distribution

from swarmlab.containerlab import image
from swarmlab.containerlab.image import (
    NODE_INIT,
    SETUP_SCRIPT,
    SWARMLAB_INIT,
    NodeImage,
    SuiteRecipe,
    as_root,
    debootstrap_command,
)
from swarmlab.model.distros import DISTROS, distro_from_os_release


@pytest.mark.parametrize("key", sorted(k for k in OS_RELEASE if k in DISTROS))
def test_recorded_os_release_maps_to_its_distro(key):
    meta = linux_distribution(key)["release_meta"]
    found = distro_from_os_release(meta["ID"], meta.get("VERSION_ID", ""),
                                   meta.get("VERSION_CODENAME", ""))
    assert found is not None and found.key == key


def test_debian_testing_is_known_by_its_codename_only():
    assert distro_from_os_release("debian", "", "forky").key == "debian-14"
    assert distro_from_os_release("debian", "14", "forky").key == "debian-14"  # once released
    assert distro_from_os_release("debian", "", "duke") is None
    assert distro_from_os_release("debian", "", "") is None


def test_suites_without_additions_keep_the_common_recipe():
    for distro in ("debian-12", "debian-13"):
        assert NodeImage(distro).recipe == SuiteRecipe()
    # the hash of these images must not move when another suite gets additions
    h = NodeImage("debian-13").content_hash
    assert h == NodeImage("debian-13").content_hash and len(h) == 12


def test_forky_image_skips_the_release_expiry_check_for_its_own_source_line_only():
    forky = NodeImage("debian-14").recipe
    assert "deb [check-valid-until=no] " in forky.setup
    assert "expired Release file" in forky.setup  # the reason is written into the file
    assert "/etc/apt/sources.list\n" in forky.setup
    assert "Check-Valid-Until" not in forky.setup  # never the global apt setting
    assert "check-valid-until" not in SETUP_SCRIPT


def test_forky_image_starts_systemd_through_the_cgroup2_init():
    forky = NodeImage("debian-14")
    assert forky.recipe.init == SWARMLAB_INIT
    assert f"cat > {SWARMLAB_INIT}" in forky.recipe.setup
    assert "unshare --cgroup" in forky.recipe.setup and f"exec {NODE_INIT}" in forky.recipe.setup
    assert NodeImage("debian-13").recipe.init == NODE_INIT


def test_forky_tag_differs_from_the_plain_recipe(monkeypatch):
    with_additions = NodeImage("debian-14").content_hash
    monkeypatch.setitem(image.SUITES, "forky", SuiteRecipe())
    assert NodeImage("debian-14").content_hash != with_additions


def test_debootstrap_uses_the_sid_script_where_the_suite_has_none(tmp_path, monkeypatch):
    monkeypatch.setattr(image, "DEBOOTSTRAP_SCRIPTS", tmp_path)
    rootfs = tmp_path / "rootfs"
    cmd = debootstrap_command(NodeImage("debian-14"), rootfs)
    assert cmd[-4:] == ["forky", str(rootfs), image.MIRROR, str(tmp_path / "sid")]
    (tmp_path / "forky").touch()  # a newer debootstrap knows forky itself
    assert debootstrap_command(NodeImage("debian-14"), rootfs)[-1] == image.MIRROR
    assert debootstrap_command(NodeImage("debian-13"), rootfs)[-1] == image.MIRROR


def test_root_steps_go_through_sudo_for_other_users(monkeypatch):
    monkeypatch.setattr(image.os, "geteuid", lambda: 0)
    assert as_root(["debootstrap", "x"]) == ["debootstrap", "x"]
    monkeypatch.setattr(image.os, "geteuid", lambda: 1001)
    assert as_root(["debootstrap", "x"]) == ["sudo", "-n", "debootstrap", "x"]


def test_without_root_or_sudo_the_build_says_what_it_needs(monkeypatch):
    monkeypatch.setattr(image.os, "geteuid", lambda: 1001)
    monkeypatch.setattr(image.shutil, "which", lambda name, path=None: None)
    with pytest.raises(image.ImageError, match="passwordless sudo"):
        image.check_root()
