"""Rootless Docker for the spec's `rootless.users`: a daemon per user beside the rootful one.

Hand-written where pyinfra has nothing: linger, subuid/subgid ranges, the setuptool install
and the running-daemon check (files, users, sysctl and links are pyinfra operations).

Each user gets subordinate uid/gid ranges, lingering (the user's systemd manager runs without a
login), Docker's systemd user unit (templates/docker-rootless.service.j2: the unit Docker's
setuptool writes), ~/.config/docker/daemon.json, DOCKER_HOST in the login profile and a
`rootless` CLI context. The setuptool, where the Docker source ships it, checks the
prerequisites, starts and enables the unit and creates the context. Rootless daemons never join
the swarm, and the users are not put in the docker group unless docker.users lists them.

Users dropped from the list are uninstalled; STATE_FILE on the node records whom swarmlab
manages. Every step is guarded by a fact read when it runs, so a second run changes nothing.
"""

from __future__ import annotations

import json
import re
import shlex
from io import StringIO

from pyinfra import host, logger, state
from pyinfra.api import FactBase, FunctionCommand, deploy, operation
from pyinfra.facts.files import Directory, FileContents, Link
from pyinfra.facts.server import Users
from pyinfra.operations import files, server

from swarmlab.distros import (
    PACKAGE_STEP_SUFFIX,
    ROOTLESS_APPARMOR,
    ROOTLESS_NATIVE_OVERLAY_KERNEL,
    Distro,
    RootlessTools,
    rootless_packages,
    rootless_tools,
)
from swarmlab.provision.context import lab_node, lab_spec, template
from swarmlab.provision.docker import running_drift
from swarmlab.provision.factcache import Request
from swarmlab.provision.ops import fail
from swarmlab.provision.packages import checked_distro, install_packages
from swarmlab.provision.prefetch import declare_lab_facts, file_facts, sysctl_facts, user_facts
from swarmlab.provision.shell import argv, q
from swarmlab.provision.shell import line as shell_line
from swarmlab.spec import LabSpec, NodeSpec

STATE_FILE = "/etc/swarmlab/rootless-users"
PROFILE_SNIPPET = "/etc/profile.d/swarmlab-rootless.sh"
SYSCTL_FILE = "/etc/sysctl.d/50-swarmlab-rootless.conf"
USERNS_CLONE = "kernel.unprivileged_userns_clone"  # Debian/Arch kernels only
# Where the scripts are linked beside the docker CLI when the source keeps them apart
# (the setuptool runs $BIN/docker, $BIN being dockerd-rootless.sh's directory).
LINK_DIR = "/usr/local/libexec/swarmlab-rootless"
DOCKER_CLI = "/usr/bin/docker"
SCRIPT = "dockerd-rootless.sh"
SETUPTOOL = "dockerd-rootless-setuptool.sh"
UNIT = "docker.service"
CONTEXT = "rootless"
USER_DIRS = (".config", ".config/docker", ".config/systemd", ".config/systemd/user")

SUBID_FILES = ("/etc/subuid", "/etc/subgid")
SUBID_COUNT = 65536
SUBID_MIN = 100000  # login.defs SUB_UID_MIN / SUB_GID_MIN defaults
SUBID_MAX = 600100000  # login.defs SUB_UID_MAX / SUB_GID_MAX defaults


# --- pure logic (unit-tested) -------------------------------------------------------------

def parse_subids(lines: list[str] | None) -> list[tuple[str, int, int]]:
    """(owner, start, count) entries of /etc/subuid or /etc/subgid; bad lines are skipped."""
    out = []
    for line in lines or []:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0].startswith("#"):
            continue
        try:
            out.append((parts[0], int(parts[1]), int(parts[2])))
        except ValueError:
            continue
    return out


def allocate_subids(entries: list[tuple[str, int, int]], owners: set[str],
                    count: int = SUBID_COUNT, low: int = SUBID_MIN,
                    high: int = SUBID_MAX) -> int | None:
    """Start of a new `count`-id range for a user, or None when one of theirs is big enough.

    `owners` are the names an entry may use for the user (name and uid). The new range is the
    lowest one at or above `low` that overlaps no range of any owner; ValueError when none fits
    below `high`.
    """
    if any(owner in owners and n >= count for owner, _, n in entries):
        return None
    start = low
    for _, s, n in sorted(entries, key=lambda e: e[1]):
        if s + n <= start:
            continue
        if s >= start + count:
            break
        start = s + n
    if start + count > high:
        raise ValueError(f"no free range of {count} subordinate ids below {high}")
    return start


def kernel_version(release: str) -> tuple[int, int]:
    """(major, minor) of a `uname -r` string; (0, 0) when it cannot be read."""
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def rootless_storage_driver(container: str, kernel: str) -> str:
    """The storage driver a rootless daemon uses on this host.

    In a container (the container lab's nodes) the user's data dir sits on the node's own
    overlay root, where overlayfs cannot stack and /dev/fuse is absent: vfs. On hosts, overlay2
    from kernel 5.11 on (rootless overlayfs), fuse-overlayfs below.
    """
    if container and container != "none":
        return "vfs"
    if kernel_version(kernel) < ROOTLESS_NATIVE_OVERLAY_KERNEL:
        return "fuse-overlayfs"
    return "overlay2"


def rootless_daemon_config(spec: LabSpec, storage_driver: str) -> dict:
    """The user's ~/.config/docker/daemon.json: the storage driver and the spec's log settings."""
    cfg: dict = {"storage-driver": storage_driver, "log-driver": spec.docker.log_driver}
    if spec.docker.log_opts:
        cfg["log-opts"] = dict(spec.docker.log_opts)
    return cfg


def bin_dir(tools: RootlessTools) -> str:
    """The directory the unit and the setuptool run dockerd-rootless.sh from."""
    assert tools.script_dir is not None
    return tools.script_dir if tools.docker_beside else LINK_DIR


def apparmor_profile_path(binary: str) -> str:
    """swarmlab's profile file for a binary, named after its path (Docker's docs style)."""
    return "/etc/apparmor.d/swarmlab." + binary.strip("/").replace("/", ".")


def needs_apparmor_profile(distro: str, facts: dict, own_profile: str) -> bool:
    """True where AppArmor restricts user namespaces and no other profile covers rootlesskit."""
    if distro not in ROOTLESS_APPARMOR or not facts.get("apparmor"):
        return False
    return not [p for p in facts.get("apparmor_covering", []) if p != own_profile]


def managed_users(lines: list[str] | None) -> list[str]:
    return [line.strip() for line in lines or [] if line.strip() and not line.startswith("#")]


def as_user(user: str, command: str, path: str | None = None) -> str:
    """A root shell command running `command` as `user` in the user's systemd session."""
    u = shlex.quote(user)
    env = (f"XDG_RUNTIME_DIR=/run/user/$(id -u {u}) "
           f"DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$(id -u {u})/bus")
    if path:
        env += " PATH=" + shlex.quote(f"{path}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return f"cd / && sudo -H -u {u} env {env} sh -c {shlex.quote(command)}"


def user_manager(user: str) -> str:
    """Root command that starts the user's systemd manager (lingering starts it at boot)."""
    return f"systemctl start user@$(id -u {shlex.quote(user)}).service"


# --- facts --------------------------------------------------------------------------------

def _key_values(output: list[str]) -> dict:
    return dict(line.split("=", 1) for line in output if "=" in line)


class RootlessHost(FactBase):
    """Host traits the rootless setup depends on (container, kernel, userns sysctl, AppArmor)."""

    default = dict

    def command(self, rootlesskit: str) -> str:
        # an attachment line ("profile NAME /path flags=(...) {" or "/path {"), not a rule
        escaped = re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", rootlesskit)  # POSIX ERE
        pattern = "^[^#]*" + escaped + "[^,]*[{][[:space:]]*$"
        return (
            "echo container=$(systemd-detect-virt --container 2>/dev/null || true); "
            "echo kernel=$(uname -r); "
            f"[ -f /proc/sys/{USERNS_CLONE.replace('.', '/')} ] && echo userns_clone=1; "
            "[ -d /sys/kernel/security/apparmor ] && echo apparmor=1; "
            "echo apparmor_covering=$(grep -lsE "
            f"{shlex.quote(pattern)} /etc/apparmor.d/* 2>/dev/null | tr '\\n' ' '); true"
        )

    def process(self, output):
        data = _key_values(output)
        data["apparmor_covering"] = data.get("apparmor_covering", "").split()
        return data


class RootlessUser(FactBase):
    """One user's rootless Docker state ({} when the user does not exist): lingering, unit
    file, enabled/active, the `rootless` context, and the running daemon beside its files
    (`docker info` over the user's socket as "info", the unit's start time, the mtimes of
    ~/.config/docker/daemon.json and of the unit file; epoch seconds)."""

    default = dict

    def command(self, user: str) -> str:
        u = shlex.quote(user)
        bus = "XDG_RUNTIME_DIR=/run/user/$uid DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$uid/bus"
        sock = "DOCKER_HOST=unix:///run/user/$uid/docker.sock"
        return (
            f"if uid=$(id -u {u} 2>/dev/null); then "
            f"home=$(getent passwd {u} | cut -d: -f6); echo uid=$uid; echo home=$home; "
            f"[ -f /var/lib/systemd/linger/{u} ] && echo linger=1; "
            f'[ -f "$home/.config/systemd/user/{UNIT}" ] && echo unit_file=1; '
            f'[ -e "$home/.config/systemd/user/default.target.wants/{UNIT}" ] && echo enabled=1; '
            f'[ -S "/run/user/$uid/bus" ] && echo active=$(cd / && sudo -u {u} env {bus} '
            f"systemctl --user is-active {UNIT} 2>/dev/null); "
            f"(cd / && sudo -H -u {u} docker context inspect {CONTEXT} >/dev/null 2>&1) "
            "&& echo context=1; "
            f'echo conf_mtime=$(stat -c %Y "$home/.config/docker/daemon.json" 2>/dev/null); '
            f'echo unit_mtime=$(stat -c %Y "$home/.config/systemd/user/{UNIT}" 2>/dev/null); '
            f'[ -S "/run/user/$uid/bus" ] && t=$(cd / && sudo -u {u} env {bus} systemctl --user '
            f"show -p ExecMainStartTimestamp --value {UNIT} 2>/dev/null) && [ -n \"$t\" ] "
            '&& echo started=$(date -d "$t" +%s); '
            f'[ -S "/run/user/$uid/docker.sock" ] && printf info= && (cd / && sudo -u {u} env {sock} '
            "docker info --format '{{json .}}' 2>/dev/null; echo); "
            "fi; true"
        )

    def process(self, output):
        data = _key_values(output)
        info = data.pop("info", "").strip()
        data["info"] = json.loads(info) if info.startswith("{") else {}
        for key in ("conf_mtime", "unit_mtime", "started"):
            value = data.get(key, "").strip()
            data[key] = int(value) if value.isdigit() else None
        return data


def rootless_drift(config: dict, user: dict) -> list[str]:
    """How the user's running daemon differs from its daemon.json and unit ([] when it runs
    with them); `user` is the RootlessUser fact."""
    daemon = {"info": user.get("info"), "mtime": user.get("conf_mtime"), "started": user.get("started")}
    out = running_drift(config, daemon)
    unit, started = user.get("unit_mtime"), user.get("started")
    if unit and started and unit > started:
        out.append("the unit file was written after the daemon started")
    return out


class PathTest(FactBase):
    """True when `test <flag> path` holds on the host."""

    default = bool

    def command(self, path: str, flag: str = "-e") -> str:
        return f"test {flag} {shlex.quote(path)} && echo yes || true"

    def process(self, output):
        return bool(output) and output[0].strip() == "yes"


# --- operations ---------------------------------------------------------------------------

def _fail_with(message: str) -> FunctionCommand:
    def _fail(state, host) -> bool:
        host.log_styled(message, fg="red", log_func=logger.error)
        return False

    return FunctionCommand(_fail, (), {})


@operation()
def scripts_present(script: str, message: str):
    """Fail the host when Docker's rootless script is missing once the packages are in.

    Checked when the operation runs (the packages may arrive earlier in the same run).
    """
    if state.is_executing and not host.get_fact(PathTest, path=script, flag="-x"):
        yield _fail_with(message)


@operation()
def subid_range(user: str, path: str):
    """Append a range of SUBID_COUNT ids for `user` to path unless it has one; no overlaps."""
    uid = (host.get_fact(Users).get(user) or {}).get("uid")
    entries = parse_subids(host.get_fact(FileContents, path=path))
    owners = {user} | ({str(uid)} if uid is not None else set())
    start = allocate_subids(entries, owners)
    if start is not None:
        yield shell_line("echo", q(f"{user}:{start}:{SUBID_COUNT}"), ">>", q(path))


@operation()
def not_in_docker_group(user: str):
    """Take `user` out of the docker group (the rootful socket is root-equivalent)."""
    if "docker" in (host.get_fact(Users).get(user) or {}).get("groups", []):
        if state.is_executing:
            logger.warning(f"{host.print_prefix}{user} is a rootless user and not in docker.users: "
                           "removing it from the docker group")
        yield argv("gpasswd", "-d", user, "docker")


@operation()
def linger(user: str, enabled: bool = True):
    """`loginctl enable-linger` (or disable) unless the user already is (not) lingering."""
    info = host.get_fact(RootlessUser, user=user)
    if bool(info.get("linger")) != enabled:
        yield argv("loginctl", "enable-linger" if enabled else "disable-linger", user)


@operation()
def rootless_install(user: str, path: str):
    """First install: the setuptool where it exists (checks, start, enable, context), else
    systemctl. The unit file is already in place; the setuptool keeps it."""
    if host.get_fact(RootlessUser, user=user).get("enabled"):
        return
    yield user_manager(user)
    if host.get_fact(PathTest, path=f"{path}/{SETUPTOOL}", flag="-x"):
        # --skip-iptables only skips the setuptool's ip_tables module check, which misses a
        # built-in module and iptables-nft; the daemon's flags come from swarmlab's unit.
        yield as_user(user, f"systemctl --user daemon-reload && {SETUPTOOL} install --force "
                            "--skip-iptables", path=path)
    else:
        yield as_user(user, f"systemctl --user daemon-reload && systemctl --user enable --now {UNIT}")


@operation()
def rootless_uses_daemon_json(user: str, config: dict):
    """Restart the user's daemon when it runs with other settings than its daemon.json, or
    its daemon.json or unit was written after it started (decided from the running daemon,
    like the rootful one: not from "a file changed in this run")."""
    info = host.get_fact(RootlessUser, user=user)
    if info.get("active") != "active" or not info.get("info"):
        host.noop(f"{user}'s daemon does not answer (stopped, or starting): nothing to compare")
        return
    drift = rootless_drift(config, info)
    if not drift:
        host.noop(f"{user}'s daemon runs with its daemon.json and unit")
        return
    if state.is_executing:
        logger.info(f"{host.print_prefix}restarting {user}'s rootless docker: {'; '.join(drift)}")
    yield user_manager(user)
    yield as_user(user, f"systemctl --user daemon-reload && systemctl --user restart {UNIT}")


@operation()
def rootless_running(user: str):
    """The user's docker.service enabled and active."""
    info = host.get_fact(RootlessUser, user=user)
    cmds = []
    if not info.get("enabled"):
        cmds.append(f"systemctl --user enable {UNIT}")
    if info.get("active") != "active":
        cmds.append(f"systemctl --user start {UNIT}")
    if cmds:
        yield user_manager(user)
        yield as_user(user, " && ".join(cmds))


@operation()
def rootless_context(user: str):
    """`docker context create rootless` for the user's daemon unless the context exists."""
    if not host.get_fact(RootlessUser, user=user).get("context"):
        yield as_user(user, f"docker context create {CONTEXT} --description 'Rootless mode' "
                            "--docker host=unix:///run/user/$(id -u)/docker.sock")


@operation()
def rootless_uninstall(user: str, path: str | None):
    """Stop, disable and remove the user's daemon unit (setuptool uninstall where shipped) and
    the rootless context. The data in ~/.local/share/docker stays."""
    info = host.get_fact(RootlessUser, user=user)
    if not info:
        return
    home = info["home"]
    if info.get("unit_file") or info.get("enabled") or info.get("active") == "active":
        yield user_manager(user)
        if path and host.get_fact(PathTest, path=f"{path}/{SETUPTOOL}", flag="-x"):
            yield as_user(user, f"{SETUPTOOL} uninstall --force --skip-iptables", path=path)
        yield as_user(user, shell_line(f"systemctl --user disable --now {UNIT} 2>/dev/null; rm -f",
                                 q(f"{home}/.config/systemd/user/{UNIT}"),
                                 "; systemctl --user daemon-reload"))
        if state.is_executing:
            logger.info(f"{host.print_prefix}{user}: rootless Docker removed; its data stays in "
                        f"{home}/.local/share/docker (remove: rootlesskit rm -rf it, as {user})")
    if info.get("context"):
        yield as_user(user, f"docker context use default >/dev/null; docker context rm -f {CONTEXT}")


# --- the deploy ---------------------------------------------------------------------------

def rootless_facts(spec: LabSpec, node: NodeSpec, distro: Distro) -> list[Request]:
    """What this step reads on a node (declared for the lab's fact batch)."""
    out: list[Request] = [(FileContents, {"path": STATE_FILE})]
    wanted = list(spec.rootless.users)
    tools = rootless_tools(distro.key, spec.docker_source(node))
    if not wanted or tools is None or tools.script_dir is None:
        return out
    out += [(Directory, {"path": "/etc/swarmlab"}), *file_facts(STATE_FILE),
            (RootlessHost, {"rootlesskit": tools.rootlesskit}),
            (PathTest, {"path": f"{tools.script_dir}/{SCRIPT}", "flag": "-x"}),
            *file_facts(PROFILE_SNIPPET), *sysctl_facts(USERNS_CLONE, 1, SYSCTL_FILE)]
    if not tools.docker_beside:
        out.append((Directory, {"path": LINK_DIR}))
        out += [(Link, {"path": f"{LINK_DIR}/{name}"}) for name in (SCRIPT, SETUPTOOL, "docker")]
    out += [(FileContents, {"path": path}) for path in SUBID_FILES]
    for user in wanted:
        home = f"/home/{user}"
        out += [*user_facts(home), (RootlessUser, {"user": user}),
                *file_facts(f"{home}/.config/systemd/user/{UNIT}"),
                *file_facts(f"{home}/.config/docker/daemon.json")]
        out += [(Directory, {"path": f"{home}/{sub}"}) for sub in USER_DIRS]
    return out


@deploy("Rootless Docker")
def rootless_docker() -> None:
    declare_lab_facts()
    spec = lab_spec()
    wanted = list(spec.rootless.users)
    previous = managed_users(host.get_fact(FileContents, path=STATE_FILE))
    gone = [u for u in previous if u not in wanted]
    if not wanted and not gone:
        return
    distro = checked_distro()
    if distro is None:
        return
    source = spec.docker_source(lab_node())
    tools = rootless_tools(distro.key, source)
    usable = tools is not None and tools.script_dir is not None

    for user in gone:
        _uninstall(user, bin_dir(tools) if usable else None)

    files.directory(name="/etc/swarmlab", path="/etc/swarmlab", mode="0755")
    files.put(
        name="rootless users swarmlab manages",
        src=StringIO("".join(f"{u}\n" for u in wanted)),
        dest=STATE_FILE,
        mode="0644",
    )
    if not wanted:
        files.file(name="DOCKER_HOST profile snippet absent", path=PROFILE_SNIPPET, present=False)
        return

    if not usable:
        reason = tools.missing if tools else f"no {source!r} Docker packages for {distro.key}"
        fail(name="Rootless Docker available",
             message=f"{host.name}: rootless.users needs Docker's rootless scripts: {reason}")
        return

    facts = host.get_fact(RootlessHost, rootlesskit=tools.rootlesskit)
    driver = rootless_storage_driver(facts.get("container", ""), facts.get("kernel", ""))
    packages = rootless_packages(distro.key, source, driver)
    install_packages(
        "rootless Docker packages" + PACKAGE_STEP_SUFFIX[distro.family],
        packages, distro,
    )
    scripts_present(
        name=f"{SCRIPT} present",
        script=f"{tools.script_dir}/{SCRIPT}",
        message=f"{host.name}: {tools.script_dir}/{SCRIPT} is missing: {tools.missing}",
    )
    path = bin_dir(tools)
    if not tools.docker_beside:
        files.directory(name=LINK_DIR, path=LINK_DIR, mode="0755")
        for name, target in ((SCRIPT, f"{tools.script_dir}/{SCRIPT}"),
                             (SETUPTOOL, f"{tools.script_dir}/{SETUPTOOL}"),
                             ("docker", DOCKER_CLI)):
            files.link(name=f"{LINK_DIR}/{name}", path=f"{LINK_DIR}/{name}", target=target)

    if facts.get("userns_clone"):
        server.sysctl(name=f"sysctl {USERNS_CLONE}=1", key=USERNS_CLONE, value=1, persist=True,
                      persist_file=SYSCTL_FILE)
    _apparmor(distro.key, tools.rootlesskit, facts)

    files.template(
        name="DOCKER_HOST for rootless users at login",
        src=template("rootless-profile.sh.j2"),
        dest=PROFILE_SNIPPET,
        mode="0644",
        users=wanted,
    )
    for user in wanted:
        _install(spec, user, path, driver)


def _apparmor(distro: str, rootlesskit: str, facts: dict) -> None:
    own = apparmor_profile_path(rootlesskit)
    if needs_apparmor_profile(distro, facts, own):
        profile = files.template(
            name=f"AppArmor profile for {rootlesskit} (userns)",
            src=template("rootlesskit.apparmor.j2"),
            dest=own,
            mode="0644",
            path=rootlesskit,
            profile_name=own.rsplit("/", 1)[-1],
        )
        server.shell(name="load the rootlesskit AppArmor profile",
                     commands=[argv("apparmor_parser", "-r", own)], _if=profile.did_change)
    elif own in facts.get("apparmor_covering", []):
        # another profile (the apparmor package's) now covers the path: two would conflict
        server.shell(name="drop swarmlab's rootlesskit AppArmor profile",
                     commands=[shell_line(argv("apparmor_parser", "-R", own), "|| true"),
                               argv("rm", "-f", own)])


def _install(spec: LabSpec, user: str, path: str, driver: str) -> None:
    existing = host.get_fact(Users).get(user)
    home = existing["home"] if existing else f"/home/{user}"
    group = existing["group"] if existing else user
    server.user(name=f"{user}: user", user=user, shell=None if existing else "/bin/bash",
                create_home=True)
    for path_ in SUBID_FILES:
        subid_range(name=f"{user}: {path_} range", user=user, path=path_)
    if user not in spec.docker.users:
        not_in_docker_group(name=f"{user}: not in the docker group", user=user)
    linger(name=f"{user}: lingering", user=user)
    for sub in USER_DIRS:
        files.directory(name=f"{user}: ~/{sub}", path=f"{home}/{sub}", user=user, group=group)
    files.template(
        name=f"{user}: ~/.config/systemd/user/{UNIT}",
        src=template("docker-rootless.service.j2"),
        dest=f"{home}/.config/systemd/user/{UNIT}",
        user=user, group=group, mode="0644",
        bin_dir=path,
        exec_start=f"{path}/{SCRIPT}",
    )
    config = rootless_daemon_config(spec, driver)
    files.template(
        name=f"{user}: ~/.config/docker/daemon.json",
        src=template("daemon.json.j2"),
        dest=f"{home}/.config/docker/daemon.json",
        user=user, group=group, mode="0644",
        config=config,
    )
    rootless_install(name=f"{user}: install rootless Docker", user=user, path=path)
    rootless_uses_daemon_json(name=f"{user}: daemon runs with its daemon.json and unit", user=user,
                              config=config)
    rootless_running(name=f"{user}: docker.service enabled and running", user=user)
    rootless_context(name=f"{user}: docker context {CONTEXT}", user=user)


def _uninstall(user: str, path: str | None) -> None:
    home = (host.get_fact(Users).get(user) or {}).get("home", f"/home/{user}")
    rootless_uninstall(name=f"{user}: uninstall rootless Docker", user=user, path=path)
    files.file(name=f"{user}: no rootless daemon.json", path=f"{home}/.config/docker/daemon.json",
               present=False)
    linger(name=f"{user}: not lingering", user=user, enabled=False)
