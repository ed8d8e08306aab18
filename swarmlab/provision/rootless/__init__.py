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

Modules: subids (subordinate ids), hosttraits (container/kernel/AppArmor), daemon (the user's
unit, daemon and context), this file (the deploy and the shared files).
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host, logger, state
from pyinfra.api import FunctionCommand, deploy, operation
from pyinfra.facts.files import Directory, File, FileContents, Link
from pyinfra.facts.server import Users
from pyinfra.operations import files, server, systemd

from swarmlab.model.distros import PACKAGE_FAMILIES, Distro, RootlessTools, rootless_packages, rootless_tools
from swarmlab.model.spec import LabSpec, NodeSpec
from swarmlab.provision.context import checked_distro, declare_lab_facts, lab_node, lab_spec, render, template
from swarmlab.provision.factcache import Request
from swarmlab.provision.ops import fail
from swarmlab.provision.packages import install_packages
from swarmlab.provision.prefetch import (
    file_facts,
    register_facts,
    service_facts,
    sysctl_facts,
    user_facts,
)
from swarmlab.provision.rootless.daemon import (
    CONTEXT,
    SCRIPT,
    SETUPTOOL,
    UNIT,
    RootlessUser,
    executable,
    linger,
    rootless_context,
    rootless_daemon_config,
    rootless_install,
    rootless_uninstall,
    rootless_uses_daemon_json,
)
from swarmlab.provision.rootless.hosttraits import (
    USERNS_CLONE,
    RootlessHost,
    apparmor_profile_path,
    kernel_version,
    needs_apparmor_profile,
    rootless_apparmor,
    rootless_storage_driver,
)
from swarmlab.provision.rootless.subids import (
    SUBID_FILES,
    allocate_subids,
    parse_subids,
    subid_range,
)
from swarmlab.provision.shell import argv

__all__ = [
    "CONTEXT", "LINK_DIR", "STATE_FILE", "RootlessHost", "RootlessUser",
    "allocate_subids", "apparmor_profile_path", "bin_dir", "kernel_version",
    "needs_apparmor_profile", "parse_subids", "rootless_daemon_config", "rootless_docker",
    "rootless_facts", "rootless_storage_driver",
]

STATE_FILE = "/etc/swarmlab/rootless-users"
PROFILE_SNIPPET = "/etc/profile.d/swarmlab-rootless.sh"
SYSCTL_FILE = "/etc/sysctl.d/50-swarmlab-rootless.conf"
# Where the scripts are linked beside the docker CLI when the source keeps them apart
# (the setuptool runs $BIN/docker, $BIN being dockerd-rootless.sh's directory).
LINK_DIR = "/usr/local/libexec/swarmlab-rootless"
DOCKER_CLI = "/usr/bin/docker"
USER_DIRS = (".config", ".config/docker", ".config/systemd", ".config/systemd/user")


def bin_dir(tools: RootlessTools) -> str:
    """The directory the unit and the setuptool run dockerd-rootless.sh from."""
    assert tools.script_dir is not None
    return tools.script_dir if tools.docker_beside else LINK_DIR


def managed_users(lines: list[str] | None) -> list[str]:
    return [line.strip() for line in lines or [] if line.strip() and not line.startswith("#")]



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
    if state.is_executing and not executable(script):
        yield _fail_with(message)


@operation()
def not_in_docker_group(user: str):
    """Take `user` out of the docker group (the rootful socket is root-equivalent)."""
    if "docker" in (host.get_fact(Users).get(user) or {}).get("groups", []):
        if state.is_executing:
            logger.warning(f"{host.print_prefix}{user} is a rootless user and not in docker.users: "
                           "removing it from the docker group")
        yield argv("gpasswd", "-d", user, "docker")
    else:
        host.noop(f"{user} is not in the docker group")


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
            (File, {"path": f"{tools.script_dir}/{SCRIPT}"}),
            *file_facts(PROFILE_SNIPPET), *sysctl_facts(USERNS_CLONE, 1, SYSCTL_FILE)]
    if not tools.docker_beside:
        out.append((Directory, {"path": LINK_DIR}))
        out += [(Link, {"path": f"{LINK_DIR}/{name}"}) for name in (SCRIPT, SETUPTOOL, "docker")]
    out += [(FileContents, {"path": path}) for path in SUBID_FILES]
    for user in wanted:
        home = f"/home/{user}"
        out += [*user_facts(home), (RootlessUser, {"user": user}), *service_facts(UNIT, user),
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
        _uninstall(user, bin_dir(tools) if usable else None,
                   f"{tools.script_dir}/{SETUPTOOL}" if usable else None)

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
        "rootless Docker packages" + PACKAGE_FAMILIES[distro.family].step_suffix,
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
    rootless_apparmor(distro.key, tools.rootlesskit, facts)

    files.template(
        name="DOCKER_HOST for rootless users at login",
        src=template("rootless-profile.sh.j2"),
        dest=PROFILE_SNIPPET,
        mode="0644",
        users=wanted,
    )
    for user in wanted:
        _install(spec, user, path, driver, f"{tools.script_dir}/{SETUPTOOL}")


def _install(spec: LabSpec, user: str, path: str, driver: str, setuptool: str) -> None:
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
    unit = f"{home}/.config/systemd/user/{UNIT}"
    render(f"{user}: ~/.config/systemd/user/{UNIT}", "docker-rootless.service.j2", unit,
           user=user, group=group, bin_dir=path, exec_start=f"{path}/{SCRIPT}")
    config = rootless_daemon_config(spec, driver)
    render(f"{user}: ~/.config/docker/daemon.json", "daemon.json.j2",
           f"{home}/.config/docker/daemon.json", user=user, group=group, config=config)
    rootless_install(name=f"{user}: install rootless Docker", user=user, path=path,
                     setuptool=setuptool)
    rootless_uses_daemon_json(name=f"{user}: daemon runs with its daemon.json and unit", user=user,
                              config=config)
    # pyinfra's user-mode systemd (systemctl --user --machine=USER@.host starts the user's
    # manager when it is down); its SystemdStatus/SystemdEnabled facts are in the batch
    systemd.service(name=f"{user}: docker.service enabled and running", service=UNIT,
                    running=True, enabled=True, user_mode=True, user_name=user)
    rootless_context(name=f"{user}: docker context {CONTEXT}", user=user)


def _uninstall(user: str, path: str | None, setuptool: str | None) -> None:
    home = (host.get_fact(Users).get(user) or {}).get("home", f"/home/{user}")
    rootless_uninstall(name=f"{user}: uninstall rootless Docker", user=user, path=path,
                       setuptool=setuptool)
    files.file(name=f"{user}: no rootless daemon.json", path=f"{home}/.config/docker/daemon.json",
               present=False)
    linger(name=f"{user}: not lingering", user=user, enabled=False)


register_facts(__name__, 60, lambda spec, node, distro: rootless_facts(spec, node, distro))
