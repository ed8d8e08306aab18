"""Rootless Docker (swarmlab/provision/rootless/): subordinate id allocation, per-distro package
and script selection (Ubuntu 24.04 AppArmor, Manjaro), storage driver rule, and the deploy's
commands offline for a few distros."""

from __future__ import annotations

import pytest
from deployfakes import LOCAL, VMLAB, present_executables, rootless_scripts, run_deploy, spec_file
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import Users

from swarmlab.model.distros import DISTROS, DOCKER_PACKAGES, rootless_packages, rootless_tools
from swarmlab.model.spec import load_spec
from swarmlab.provision.rootless import (
    LINK_DIR,
    STATE_FILE,
    RootlessHost,
    RootlessUser,
    allocate_subids,
    apparmor_profile_path,
    bin_dir,
    kernel_version,
    needs_apparmor_profile,
    parse_subids,
    rootless_daemon_config,
    rootless_docker,
    rootless_storage_driver,
)

# --- subordinate ids ----------------------------------------------------------------------


def test_parse_subids_skips_comments_and_bad_lines():
    lines = ["lab:100000:65536", "# comment", "", "broken", "bob:x:1", "1001:231072:65536"]
    assert parse_subids(lines) == [("lab", 100000, 65536), ("1001", 231072, 65536)]
    assert parse_subids(None) == []


def test_user_with_a_full_range_keeps_it():
    entries = [("lab", 100000, 65536), ("alice", 165536, 65536)]
    assert allocate_subids(entries, {"alice", "1001"}) is None


def test_range_keyed_by_uid_counts_as_the_users():
    assert allocate_subids([("1001", 300000, 65536)], {"alice", "1001"}) is None


def test_first_range_on_an_empty_file():
    assert allocate_subids([], {"alice"}) == 100000


def test_new_range_goes_after_the_others():
    entries = [("lab", 100000, 65536), ("bob", 165536, 65536)]
    assert allocate_subids(entries, {"alice"}) == 231072


def test_new_range_fills_a_gap_that_is_big_enough():
    entries = [("lab", 100000, 65536), ("carol", 300000, 65536)]  # gap 165536..299999
    assert allocate_subids(entries, {"alice"}) == 165536


def test_gap_too_small_is_skipped():
    entries = [("lab", 100000, 65536), ("carol", 200000, 65536)]  # gap of 34464 only
    assert allocate_subids(entries, {"alice"}) == 265536


def test_unsorted_and_overlapping_entries_never_collide():
    entries = [("x", 150000, 100000), ("y", 100000, 65536), ("z", 120000, 10)]
    start = allocate_subids(entries, {"alice"})
    assert start == 250000
    for _, s, n in entries:
        assert start + 65536 <= s or start >= s + n


def test_too_small_own_range_gets_a_full_one():
    entries = [("alice", 100000, 1000)]
    assert allocate_subids(entries, {"alice"}) == 101000


def test_ranges_below_the_minimum_are_ignored():
    assert allocate_subids([("sys", 1000, 5000)], {"alice"}) == 100000


def test_no_room_left_is_an_error():
    with pytest.raises(ValueError, match="no free range"):
        allocate_subids([("big", 100000, 600000000)], {"alice"})


def test_allocations_in_sequence_stay_disjoint():
    entries: list[tuple[str, int, int]] = [("lab", 100000, 65536)]
    for user in ("alice", "bob", "carol"):
        start = allocate_subids(entries, {user})
        assert start is not None
        entries.append((user, start, 65536))
    spans = sorted((s, s + n) for _, s, n in entries)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))


# --- per-distro data ----------------------------------------------------------------------


@pytest.mark.parametrize("distro", ["ubuntu-22.04", "ubuntu-24.04", "debian-12", "debian-13",
                                    "debian-14"])
def test_official_source_uses_docker_ce_rootless_extras(distro):
    pkgs = rootless_packages(distro, "official", "overlay2")
    assert "docker-ce-rootless-extras" in pkgs and "uidmap" in pkgs
    assert "dbus-user-session" in pkgs and "rootlesskit" not in pkgs
    tools = rootless_tools(distro, "official")
    assert tools.script_dir == "/usr/bin" and bin_dir(tools) == "/usr/bin"


@pytest.mark.parametrize("distro", ["debian-12", "debian-13", "debian-14"])
def test_debian_distro_source_links_the_contrib_scripts(distro):
    assert rootless_packages(distro, "distro", "vfs") == [
        "rootlesskit", "uidmap", "dbus-user-session", "slirp4netns"]
    tools = rootless_tools(distro, "distro")
    assert tools.script_dir == "/usr/share/docker.io/contrib"
    assert not tools.docker_beside and bin_dir(tools) == LINK_DIR


@pytest.mark.parametrize("distro", ["ubuntu-22.04", "ubuntu-24.04"])
def test_ubuntu_distro_source_has_no_rootless_scripts(distro):
    tools = rootless_tools(distro, "distro")
    assert tools.script_dir is None
    assert "docker.source: official" in tools.missing


def test_manjaro_path_uses_pacman_packages_and_names_the_aur_package():
    assert DISTROS["manjaro"].family == "pacman"
    assert rootless_packages("manjaro", "distro", "overlay2") == ["rootlesskit", "slirp4netns"]
    tools = rootless_tools("manjaro", "distro")
    assert tools.script_dir == "/usr/bin" and tools.docker_beside
    assert "docker-rootless-extras" in tools.missing and "AUR" in tools.missing
    assert rootless_tools("manjaro", "official") is None


def test_fuse_overlayfs_only_for_its_driver():
    for key in DOCKER_PACKAGES:
        assert "fuse-overlayfs" not in rootless_packages(*key, "overlay2")
        assert "fuse-overlayfs" not in rootless_packages(*key, "vfs")
    assert rootless_packages("manjaro", "distro", "fuse-overlayfs")[-1] == "fuse-overlayfs"


def test_every_docker_source_has_rootless_data():
    assert all(rootless_tools(*key) for key in DOCKER_PACKAGES)


@pytest.mark.parametrize(("container", "kernel", "driver"), [
    ("docker", "6.1.0-26-amd64", "vfs"),
    ("lxc", "6.8.0", "vfs"),
    ("none", "6.8.0-45-generic", "overlay2"),
    ("", "5.11.0", "overlay2"),
    ("none", "5.10.0-33-amd64", "fuse-overlayfs"),
    ("none", "garbage", "fuse-overlayfs"),
])
def test_storage_driver_rule(container, kernel, driver):
    assert rootless_storage_driver(container, kernel) == driver


def test_kernel_version():
    assert kernel_version("6.18.44-fc-v657") == (6, 18)
    assert kernel_version("") == (0, 0)


def test_daemon_config_carries_driver_and_log_settings():
    cfg = rootless_daemon_config(load_spec(LOCAL), "vfs")
    assert cfg["storage-driver"] == "vfs"
    assert cfg["log-driver"] == "json-file" and cfg["log-opts"]["max-size"] == "10m"
    assert "live-restore" not in cfg  # swarm setting, not for a rootless daemon


# --- AppArmor (Ubuntu 24.04) --------------------------------------------------------------

OWN = apparmor_profile_path("/usr/bin/rootlesskit")


def test_apparmor_profile_name_follows_the_binary_path():
    assert OWN == "/etc/apparmor.d/swarmlab.usr.bin.rootlesskit"


@pytest.mark.parametrize(("distro", "facts", "needed"), [
    ("ubuntu-24.04", {"apparmor": "1", "apparmor_covering": []}, True),
    ("ubuntu-24.04", {"apparmor": "1", "apparmor_covering": [OWN]}, True),
    ("ubuntu-24.04", {"apparmor": "1", "apparmor_covering": ["/etc/apparmor.d/rootlesskit"]}, False),
    ("ubuntu-24.04", {"apparmor_covering": []}, False),  # AppArmor off (e.g. in a container)
    ("ubuntu-22.04", {"apparmor": "1", "apparmor_covering": []}, False),
    ("debian-13", {"apparmor": "1", "apparmor_covering": []}, False),
    ("manjaro", {"apparmor_covering": []}, False),
])
def test_apparmor_profile_only_where_userns_is_restricted_and_uncovered(distro, facts, needed):
    assert needs_apparmor_profile(distro, facts, OWN) is needed


def test_rootless_host_fact_parses_covering_profiles():
    out = ["container=none", "kernel=6.8.0-45-generic", "apparmor=1",
           "apparmor_covering=/etc/apparmor.d/rootlesskit /etc/apparmor.d/other "]
    data = RootlessHost().process(out)
    assert data["apparmor_covering"] == ["/etc/apparmor.d/rootlesskit", "/etc/apparmor.d/other"]
    assert RootlessHost().process(["apparmor_covering="])["apparmor_covering"] == []


# --- the deploy, offline ------------------------------------------------------------------

HOST_VM = {"container": "none", "kernel": "6.8.0-45-generic", "apparmor": "1",
           "apparmor_covering": []}


def _spec(tmp_path, distro, source, users=("alice",)):
    return spec_file(tmp_path, [distro] * 3, base=VMLAB, docker={"source": source},
                     rootless={"users": list(users)})


def test_ubuntu_2404_official_writes_the_rootlesskit_apparmor_profile(tmp_path):
    run = run_deploy(rootless_docker, _spec(tmp_path, "ubuntu-24.04", "official"), "node1", {
        RootlessHost: HOST_VM, **rootless_scripts()})
    assert not run.failed, run.errors
    profile = run.files[OWN]
    assert '"/usr/bin/rootlesskit" flags=(unconfined)' in profile and "userns," in profile
    assert f"apparmor_parser -r {OWN}" in run.commands
    assert any("docker-ce-rootless-extras" in c for c in run.commands)
    # the setuptool from docker-ce-rootless-extras, as alice, in her session
    install = run.op("alice: install rootless Docker").commands
    assert any("sudo -H -u alice" in c and "dockerd-rootless-setuptool.sh install --force" in c
               for c in install)


def test_ubuntu_2404_keeps_the_apparmor_packages_profile(tmp_path):
    facts = dict(HOST_VM, apparmor_covering=["/etc/apparmor.d/rootlesskit"])
    run = run_deploy(rootless_docker, _spec(tmp_path, "ubuntu-24.04", "official"), "node1", {
        RootlessHost: facts, **rootless_scripts()})
    assert not run.failed
    assert OWN not in run.files and not any("apparmor_parser" in c for c in run.commands)


def test_ubuntu_distro_source_fails_the_host_clearly(tmp_path):
    run = run_deploy(rootless_docker, _spec(tmp_path, "ubuntu-24.04", "distro"), "node1", {
        RootlessHost: HOST_VM})
    assert run.failed
    assert "docker.source: official" in run.errors[-1]
    assert not any("useradd" in c for c in run.commands)


def test_manjaro_without_the_aur_scripts_fails_after_the_packages(tmp_path):
    run = run_deploy(rootless_docker, _spec(tmp_path, "manjaro", "distro"), "node3", {
        RootlessHost: dict(HOST_VM, apparmor="")})
    assert run.failed
    assert "pacman -Syu --noconfirm --needed rootlesskit slirp4netns" in run.commands
    assert "docker-rootless-extras" in run.errors[-1]


def test_a_script_without_execute_bit_counts_as_missing(tmp_path):
    facts = present_executables("/usr/bin/dockerd-rootless.sh")
    next(iter(facts.values()))["mode"] = 644
    run = run_deploy(rootless_docker, _spec(tmp_path, "manjaro", "distro"), "node3", {
        RootlessHost: dict(HOST_VM, apparmor=""), **facts})
    assert run.failed
    assert "/usr/bin/dockerd-rootless.sh is missing" in run.errors[-1]


def test_debian_distro_docker_runs_the_setuptool_through_its_link(tmp_path):
    # docker.io keeps the scripts in contrib/: the setuptool is checked at its real path and
    # run from the link directory beside the docker CLI
    tools = rootless_tools("debian-13", "distro")
    run = run_deploy(rootless_docker, _spec(tmp_path, "debian-13", "distro"), "node1", {
        RootlessHost: {"container": "docker", "kernel": "6.1.0"},
        **present_executables(f"{tools.script_dir}/dockerd-rootless.sh",
                              f"{tools.script_dir}/dockerd-rootless-setuptool.sh")})
    assert not run.failed, run.errors
    install = " ".join(run.op("alice: install rootless Docker").commands)
    assert f"PATH={LINK_DIR}:" in install and "dockerd-rootless-setuptool.sh install" in install


def test_manjaro_with_the_scripts_writes_the_unit_and_enables_it(tmp_path):
    run = run_deploy(rootless_docker, _spec(tmp_path, "manjaro", "distro"), "node3", {
        RootlessHost: dict(HOST_VM, apparmor=""),
        **present_executables("/usr/bin/dockerd-rootless.sh")})
    assert not run.failed, run.errors
    unit = run.files["/home/alice/.config/systemd/user/docker.service"]
    assert "ExecStart=/usr/bin/dockerd-rootless.sh\n" in unit and "Type=notify" in unit
    install = " ".join(run.op("alice: install rootless Docker").commands)
    assert "systemctl --user enable --now docker.service" in install
    assert "setuptool" not in install


def test_container_lab_first_run(tmp_path):
    spec = spec_file(tmp_path, ["debian-13"] * 3, base=LOCAL)
    run = run_deploy(rootless_docker, spec, "node1", {
        RootlessHost: {"container": "docker", "kernel": "6.1.0", "userns_clone": "1"},
        **rootless_scripts(),
        (FileContents, "/etc/subuid"): ["lab:100000:65536"],
        (FileContents, "/etc/subgid"): ["lab:100000:65536"],
    })
    assert not run.failed, run.errors
    assert '"storage-driver": "vfs"' in run.files["/home/alice/.config/docker/daemon.json"]
    assert "echo alice:165536:65536 >> /etc/subuid" in run.commands
    assert "loginctl enable-linger alice" in run.commands
    assert run.files[STATE_FILE] == "alice\n"
    assert "alice)" in run.files["/etc/profile.d/swarmlab-rootless.sh"]
    # Debian keeps the scripts in contrib/: linked beside the docker CLI
    assert f"ExecStart={LINK_DIR}/dockerd-rootless.sh" in \
        run.files["/home/alice/.config/systemd/user/docker.service"]
    # not put in the docker group (docker.users of this spec is [lab])
    assert not any("docker" in c for c in run.op("alice: user").commands)
    assert not any("gpasswd" in c for c in run.commands)
    assert any("kernel.unprivileged_userns_clone=1" in c for c in run.commands)
    assert "docker context create rootless" in " ".join(run.commands)


def test_removed_user_is_uninstalled(tmp_path):
    spec = spec_file(tmp_path, ["debian-13"] * 3, base=LOCAL, rootless={"users": []})
    run = run_deploy(rootless_docker, spec, "node1", {
        (FileContents, STATE_FILE): ["alice"],
        (RootlessUser, "alice"): {"uid": "1001", "home": "/home/alice", "linger": "1",
                                  "unit_file": "1", "enabled": "1", "active": "active",
                                  "context": "1"},
        Users: {"alice": {"home": "/home/alice", "uid": 1001, "group": "alice", "groups": []}},
        **rootless_scripts(),
    })
    assert not run.failed, run.errors
    joined = " ".join(run.commands)
    assert "dockerd-rootless-setuptool.sh uninstall" in joined
    assert "systemctl --user disable --now docker.service" in joined
    assert "docker context rm -f rootless" in joined
    assert "loginctl disable-linger alice" in run.commands
    assert run.files[STATE_FILE] == ""
    assert run.has_op("DOCKER_HOST profile snippet absent")
    assert not any("useradd" in c for c in run.commands)


def test_user_in_docker_group_but_not_in_docker_users_is_taken_out(tmp_path):
    spec = spec_file(tmp_path, ["debian-13"] * 3, base=LOCAL)
    users = {"alice": {"home": "/home/alice", "uid": 1001, "group": "alice",
                       "groups": ["docker"], "shell": "/bin/bash"}}
    run = run_deploy(rootless_docker, spec, "node1", {
        RootlessHost: {"container": "docker", "kernel": "6.1.0"}, **rootless_scripts(), Users: users})
    assert "gpasswd -d alice docker" in run.commands


def test_no_rootless_users_and_none_before_does_nothing(tmp_path):
    run = run_deploy(rootless_docker, _spec(tmp_path, "ubuntu-24.04", "official", users=()),
                     "node1", {})
    assert run.ops == []


def test_rootless_daemon_restarts_when_it_runs_with_other_settings_than_its_files():
    from swarmlab.provision.rootless.daemon import RootlessUser, rootless_drift

    config = {"storage-driver": "vfs", "log-driver": "local"}
    out = ("uid=1001\nhome=/home/alice\nconf_mtime=100\nunit_mtime=90\nstarted=200\n"
           'info={"Driver": "vfs", "LoggingDriver": "local"}\n')
    user = RootlessUser().process(out.splitlines())
    assert user["info"] == {"Driver": "vfs", "LoggingDriver": "local"} and user["started"] == 200
    assert rootless_drift(config, user) == []
    assert rootless_drift({**config, "log-driver": "json-file"}, user) == [
        "log-driver: dockerd runs with 'local', daemon.json says 'json-file'"]
    assert rootless_drift(config, {**user, "conf_mtime": 300}) == [
        "daemon.json was written after dockerd started (restart docker to apply it)"]
    assert rootless_drift(config, {**user, "unit_mtime": 300}) == [
        "the unit file was written after the daemon started"]


def test_rootless_restart_is_decided_from_the_running_daemon():
    from deployfakes import FactFn, run_deploy

    from swarmlab.provision.rootless import RootlessHost, RootlessUser, rootless_docker

    log_driver = rootless_daemon_config(load_spec(LOCAL), "vfs")["log-driver"]
    running = {"uid": "1001", "home": "/home/alice", "active": "active", "enabled": "1",
               "conf_mtime": 100, "unit_mtime": 100, "started": 200,
               "info": {"Driver": "vfs", "LoggingDriver": "not-" + log_driver}}
    name = "alice: daemon runs with its daemon.json and unit"
    stale = run_deploy(rootless_docker, LOCAL, "node1", {RootlessUser: FactFn(lambda user: running),
                                                          **rootless_scripts(), RootlessHost: {"container": "docker"}})
    assert any("systemctl --user restart docker.service" in c for c in stale.op(name).commands)
    same = {**running, "info": {"Driver": "vfs", "LoggingDriver": log_driver}}
    ok = run_deploy(rootless_docker, LOCAL, "node1", {RootlessUser: FactFn(lambda user: same),
                                                       **rootless_scripts(), RootlessHost: {"container": "docker"}})
    assert ok.op(name).commands == []


def test_rootless_unit_enabled_and_running_through_pyinfras_user_mode_systemd():
    from deployfakes import run_deploy
    from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus

    from swarmlab.provision.rootless import RootlessHost, rootless_docker

    name = "alice: docker.service enabled and running"
    base = {RootlessHost: {"container": "docker"}, **rootless_scripts()}
    stopped = run_deploy(rootless_docker, LOCAL, "node1", {
        **base, SystemdStatus: {"docker.service": False}, SystemdEnabled: {"docker.service": True}})
    assert stopped.op(name).commands == [
        "systemctl --user --machine=alice@.host start docker.service"]
    up = run_deploy(rootless_docker, LOCAL, "node1", {
        **base, SystemdStatus: {"docker.service": True}, SystemdEnabled: {"docker.service": True}})
    assert up.op(name).commands == []
    # the facts it reads are in the lab's batch (no command of their own on a no-change run)
    from swarmlab.model.distros import DISTROS
    from swarmlab.provision.rootless import rootless_facts

    spec = load_spec(LOCAL)
    declared = rootless_facts(spec, spec.node("node1"), DISTROS["debian-13"])
    for fact in (SystemdStatus, SystemdEnabled):
        assert (fact, {"user_mode": True, "machine": None, "user_name": "alice",
                       "services": ["docker.service"]}) in declared
