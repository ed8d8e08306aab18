"""Rootless Docker for each spec rootless.users entry, on every node: the user's own daemon runs
(systemd user unit), reports rootless mode, runs a container whose processes carry the user's
subordinate ids on the host (never root), stays out of the swarm, and the user is not in the
docker group unless docker.users says so.
"""

from __future__ import annotations

import json
import shlex

import pytest

from swarmlab.model.spec import load_spec
from swarmlab.verify.probe import IMAGE, LABEL

NO_USERS = "the spec has no rootless.users: no rootless Docker to check"

def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `rootless_user` over the spec's rootless.users (one skipped case if none)."""
    if "rootless_user" in metafunc.fixturenames:
        from swarmlab.control.inventory import spec_path

        users = load_spec(spec_path()).rootless.users
        params = users or [pytest.param(None, marks=pytest.mark.skip(reason=NO_USERS))]
        metafunc.parametrize("rootless_user", params, ids=users or ["no-rootless-users"])


class RootlessUser:
    """Run commands as one rootless user on one node, against that user's daemon."""

    def __init__(self, host, name: str, uid: int):
        self.host = host
        self.name = name
        self.uid = uid
        self.runtime = f"/run/user/{self.uid}"

    @property
    def as_user(self) -> str:
        """Prefix that runs a command as the user, in its session, against its daemon."""
        return (f"sudo -H -u {shlex.quote(self.name)} env XDG_RUNTIME_DIR={self.runtime} "
                f"DBUS_SESSION_BUS_ADDRESS=unix:path={self.runtime}/bus "
                f"DOCKER_HOST=unix://{self.runtime}/docker.sock")

    def command(self, cmd: str) -> str:
        return f"cd / && {self.as_user} sh -c {shlex.quote(cmd)}"

    def run(self, cmd: str):
        return self.host.run(self.command(cmd))

    def check_output(self, cmd: str) -> str:
        return self.host.check_output(self.command(cmd))

    def subordinate_ranges(self) -> list[range]:
        out = []
        for line in self.host.file("/etc/subuid").content_string.splitlines():
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[0] in (self.name, str(self.uid)):
                out.append(range(int(parts[1]), int(parts[1]) + int(parts[2])))
        return out


_UIDS: dict[tuple[str, str], int] = {}


@pytest.fixture
def ruser(host, node, rootless_user) -> RootlessUser:
    """The user on the node under test (its uid read once per session)."""
    key = (node.name, rootless_user)
    if key not in _UIDS:
        _UIDS[key] = host.user(rootless_user).uid
    return RootlessUser(host, rootless_user, _UIDS[key])


def _ensure_image(user: RootlessUser, probe) -> None:
    """The probe image (built by the rootful daemon, no registry) loaded into the user's daemon."""
    if user.run(f"docker image inspect {IMAGE}").succeeded:
        return
    user.host.check_output(f"docker save {IMAGE} | (cd / && {user.as_user} docker load)")


def _host_uid(host, pid: str) -> int:
    status = host.file(f"/proc/{pid}/status").content_string
    line = next(ln for ln in status.splitlines() if ln.startswith("Uid:"))
    return int(line.split()[1])  # real uid


def test_user_unit_active_and_enabled(ruser):
    assert ruser.run("systemctl --user is-active docker.service").stdout.strip() == "active", (
        f"{ruser.name}'s docker.service (systemd user unit) is not active"
    )
    assert ruser.run("systemctl --user is-enabled docker.service").stdout.strip() == "enabled"
    assert ruser.host.file(f"/var/lib/systemd/linger/{ruser.name}").exists, (
        f"{ruser.name} does not linger: the daemon would stop at logout and not start at boot"
    )


def test_daemon_is_rootless_and_outside_the_swarm(ruser):
    info = json.loads(ruser.check_output("docker info --format '{{json .}}'"))
    assert "name=rootless" in (info.get("SecurityOptions") or []), info.get("SecurityOptions")
    assert info["Swarm"]["LocalNodeState"] == "inactive", "a rootless daemon joined a swarm"
    assert info["DockerRootDir"] != "/var/lib/docker", "the user's daemon uses the rootful data dir"


def test_login_shell_and_context_point_at_the_users_daemon(ruser):
    sock = f"unix://{ruser.runtime}/docker.sock"
    login = ruser.host.check_output("cd / && sudo -iu %s sh -c 'echo $DOCKER_HOST'", ruser.name)
    assert login == sock, f"login DOCKER_HOST is {login!r}, want {sock}"
    endpoint = ruser.check_output(
        "docker context inspect rootless --format '{{.Endpoints.docker.Host}}'"
    )
    assert endpoint == sock


def test_container_runs_under_subordinate_ids(ruser, probe):
    _ensure_image(ruser, probe)
    ranges = ruser.subordinate_ranges()
    assert ranges, f"{ruser.name} has no /etc/subuid range"
    name = "swarmlab-probe-rootless"
    ruser.run(f"docker rm -f {name}")
    try:
        ruser.check_output(
            f"docker run -d --pull never --name {name} --label {LABEL} --user 1000:1000 {IMAGE} sleep 300"
        )
        pid = ruser.check_output(f"docker inspect -f '{{{{.State.Pid}}}}' {name}")
        assert "sleep" in ruser.host.file(f"/proc/{pid}/cmdline").content_string
        uid = _host_uid(ruser.host, pid)
        assert uid != 0, "a rootless container process runs as root on the host"
        assert any(uid in r for r in ranges), (
            f"container uid 1000 is host uid {uid}, outside {ruser.name}'s subordinate ranges "
            f"{[(r.start, len(r)) for r in ranges]}"
        )
    finally:
        ruser.run(f"docker rm -f {name}")


def test_container_root_is_the_user_on_the_host(ruser, probe):
    _ensure_image(ruser, probe)
    name = "swarmlab-probe-rootless-root"
    ruser.run(f"docker rm -f {name}")
    try:
        ruser.check_output(f"docker run -d --pull never --name {name} --label {LABEL} {IMAGE} sleep 300")
        pid = ruser.check_output(f"docker inspect -f '{{{{.State.Pid}}}}' {name}")
        assert _host_uid(ruser.host, pid) == ruser.uid
    finally:
        ruser.run(f"docker rm -f {name}")


def test_docker_group_only_when_listed(spec, ruser):
    groups = ruser.host.user(ruser.name).groups
    if ruser.name in spec.docker.users:
        assert "docker" in groups, f"{ruser.name} is in docker.users but not in the docker group"
    else:
        assert "docker" not in groups, (
            f"{ruser.name} is in the docker group (root-equivalent) but docker.users does not "
            "list it"
        )
