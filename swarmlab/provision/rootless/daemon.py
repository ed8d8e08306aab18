"""One user's rootless daemon: its systemd user unit, the running daemon against its files,
and the `rootless` CLI context.

Hand-written: linger (pyinfra has no loginctl operation), the setuptool install, the context,
and the running-daemon check (RootlessUser reads the unit's state and the daemon's `docker info`
in the batch, so the drift repair needs no extra command); the restart after a drift stays ours
(pyinfra's `systemd.service(restarted=True)` restarts on every run). "Enabled and running" is
pyinfra's `systemd.service(user_mode=True, user_name=...)` (the deploy, in __init__).
"""

from __future__ import annotations

import json
import shlex

from pyinfra import host, logger, state
from pyinfra.api import FactBase, operation
from pyinfra.facts.files import File

from swarmlab.model.spec import LabSpec
from swarmlab.provision.docker import running_drift
from swarmlab.provision.rootless.hosttraits import key_values
from swarmlab.provision.shell import argv, q
from swarmlab.provision.shell import line as shell_line

SCRIPT = "dockerd-rootless.sh"
SETUPTOOL = "dockerd-rootless-setuptool.sh"
UNIT = "docker.service"
CONTEXT = "rootless"


def rootless_daemon_config(spec: LabSpec, storage_driver: str) -> dict:
    """The user's ~/.config/docker/daemon.json: the storage driver and the spec's log settings."""
    cfg: dict = {"storage-driver": storage_driver, "log-driver": spec.docker.log_driver}
    if spec.docker.log_opts:
        cfg["log-opts"] = dict(spec.docker.log_opts)
    return cfg


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


class RootlessUser(FactBase):
    """One user's rootless Docker state ({} when the user does not exist): lingering, unit
    file, enabled (the wants link), the `rootless` context, and the running daemon beside its files
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
        data = key_values(output)
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


def executable(path: str) -> bool:
    """True when `path` is a regular file with an execute bit (pyinfra's `files.File` fact;
    a link reads as not a file: pass the link's target)."""
    info = host.get_fact(File, path=path)
    return bool(info) and int(str(info["mode"]), 8) & 0o111 != 0



@operation()
def linger(user: str, enabled: bool = True):
    """`loginctl enable-linger` (or disable) unless the user already is (not) lingering."""
    info = host.get_fact(RootlessUser, user=user)
    if bool(info.get("linger")) == enabled:
        host.noop(f"{user} is {'' if enabled else 'not '}lingering")
        return
    yield argv("loginctl", "enable-linger" if enabled else "disable-linger", user)


@operation()
def rootless_install(user: str, path: str, setuptool: str):
    """First install: the setuptool where it exists (checks, start, enable, context), else
    systemctl. The unit file is already in place; the setuptool keeps it. `path`: where the
    unit runs the scripts from; `setuptool`: the setuptool's real file."""
    if host.get_fact(RootlessUser, user=user).get("enabled"):
        host.noop(f"{user}'s {UNIT} is installed and enabled")
        return
    yield user_manager(user)
    if executable(setuptool):
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
    if not info.get("info"):  # (whether systemd runs the unit: pyinfra's SystemdStatus)
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
def rootless_context(user: str):
    """`docker context create rootless` for the user's daemon unless the context exists."""
    if host.get_fact(RootlessUser, user=user).get("context"):
        host.noop(f"{user} has the {CONTEXT} context")
        return
    yield as_user(user, f"docker context create {CONTEXT} --description 'Rootless mode' "
                        "--docker host=unix:///run/user/$(id -u)/docker.sock")


@operation()
def rootless_uninstall(user: str, path: str | None, setuptool: str | None):
    """Stop, disable and remove the user's daemon unit (setuptool uninstall where shipped) and
    the rootless context. The data in ~/.local/share/docker stays."""
    info = host.get_fact(RootlessUser, user=user)
    if not info:
        host.noop(f"no user {user}: nothing to uninstall")
        return
    home = info["home"]
    if info.get("unit_file") or info.get("enabled") or info.get("info"):
        yield user_manager(user)
        if path and setuptool and executable(setuptool):
            yield as_user(user, f"{SETUPTOOL} uninstall --force --skip-iptables", path=path)
        yield as_user(user, shell_line(f"systemctl --user disable --now {UNIT} 2>/dev/null; rm -f",
                                 q(f"{home}/.config/systemd/user/{UNIT}"),
                                 "; systemctl --user daemon-reload"))
        if state.is_executing:
            logger.info(f"{host.print_prefix}{user}: rootless Docker removed; its data stays in "
                        f"{home}/.local/share/docker (remove: rootlesskit rm -rf it, as {user})")
    if info.get("context"):
        yield as_user(user, f"docker context use default >/dev/null; docker context rm -f {CONTEXT}")


