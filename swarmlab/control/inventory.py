"""Turn a lab spec into pyinfra inventory groups (`managers`, `workers`) with host data.

Connection settings come from, in order: the container lab's connection file (written by
`swarmlab up`), a running Vagrant environment (python-vagrant's `conf`), or the spec's
IPs with the user's own SSH settings (`SWARMLAB_SSH_USER`, `SWARMLAB_SSH_KEY`).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from swarmlab.model.shipped import checkout
from swarmlab.model.spec import LabSpec, NodeSpec, SpecError, load_spec
from swarmlab.model.specfile import RULE, find_spec
from swarmlab.model.state import lab_state_dir, state_root

CONNECTION_FILE = "connection.json"
VAGRANT_TRIES = 3  # a query Vagrant refuses (another `vagrant` holds the machine) is retried

HostEntry = tuple[str, dict[str, Any]]
# lab nodes are recreated with new host keys all the time: pyinfra host data that trusts them
NO_HOST_KEY_CHECK = {"ssh_strict_host_key_checking": "off", "ssh_known_hosts_file": "/dev/null"}


def spec_path() -> Path:
    """The spec the inventory reads, by the CLI's rule (swarmlab.model.specfile) without --spec:
    `SWARMLAB_SPEC`, else ./lab.yaml, else the checkout's labs/local.yaml."""
    found = find_spec()
    if found is None:
        raise SpecError(f"no lab spec: set SWARMLAB_SPEC=FILE or put a lab.yaml in the current "
                        f"directory (the rule: {RULE})")
    return found.path


def container_connection(spec: LabSpec) -> dict[str, Any] | None:
    """SSH settings written by the container lab provider, if this lab is a container lab."""
    path = state_root() / spec.name / CONNECTION_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def write_container_connection(spec: LabSpec, data: dict[str, Any]) -> Path:
    path = state_root() / spec.name / CONNECTION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def vagrant_root() -> Path:
    """The Vagrantfile's directory: VAGRANT_CWD, else the checkout (the Vagrantfile is a repo file),
    else the current directory."""
    given = os.environ.get("VAGRANT_CWD")
    return Path(given) if given else checkout() or Path.cwd()


def vagrant_dotfile(root: Path | None = None, spec: LabSpec | None = None) -> Path:
    """Where Vagrant keeps this project's machines: VAGRANT_DOTFILE_PATH (relative to the
    Vagrantfile's directory, as Vagrant reads it), else the lab's own `<state>/<lab>/vagrant`
    where `swarmlab vm up` or `vagrant-prep` put it, else `.vagrant`."""
    given = os.environ.get("VAGRANT_DOTFILE_PATH")
    if given:
        return (root or vagrant_root()) / given
    if spec is not None and (state_root() / spec.name / "vagrant").is_dir():
        return state_root() / spec.name / "vagrant"
    return (root or vagrant_root()) / ".vagrant"


def vagrant_connections(spec: LabSpec, root: Path | None = None,
                        path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Per running VM: SSH host/port/user/key from python-vagrant; empty without Vagrant.

    Vagrant refuses a second process on a machine another one is reading ("machine is
    locked"), which parallel readers of this inventory (pytest-xdist workers of the
    verification) would hit: the queries of this lab are serialized by a lock file in its
    state dir, a refused one is retried, and if Vagrant still fails the spec's IPs are used
    with a warning on stderr.
    """
    root = root or vagrant_root()
    dotfile = vagrant_dotfile(root, spec)
    if not dotfile.is_dir():
        return {}
    try:
        import vagrant  # python-vagrant
    except ImportError:  # pragma: no cover - declared dependency
        return {}
    env = dict(os.environ, SWARMLAB_SPEC=str(path or spec_path()),  # the Vagrantfile reads this spec
               VAGRANT_DOTFILE_PATH=str(dotfile))
    v = vagrant.Vagrant(str(root), env=env, quiet_stderr=True, quiet_stdout=True)
    error: Exception | None = None
    with _vagrant_lock(spec):
        for attempt in range(VAGRANT_TRIES):
            try:
                running = {s.name for s in v.status() if s.state == v.RUNNING}
                return {node.name: vagrant_ssh_data(v, node.name)
                        for node in spec.nodes if node.name in running}
            except subprocess.CalledProcessError as err:  # refused or failed: try again
                error = err
                time.sleep(1.0 + attempt)
            except Exception as err:  # vagrant missing or environment broken
                error = err
                break
    print(f"swarmlab inventory: Vagrant did not answer in {root} ({error}); "
          "using the spec's IPs", file=sys.stderr)
    return {}


@contextmanager
def _vagrant_lock(spec: LabSpec) -> Iterator[None]:
    with (lab_state_dir(spec.name) / "vagrant.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def vagrant_ssh_data(v: Any, vm_name: str) -> dict[str, Any]:
    """pyinfra connection data of one VM from python-vagrant (`conf` runs `vagrant ssh-config`
    once and caches it for the accessors); KeyError when Vagrant gives no HostName."""
    conf = v.conf(vm_name=vm_name)
    if not v.hostname(vm_name=vm_name):
        raise KeyError(f"no HostName in `vagrant ssh-config {vm_name}`: {conf}")
    data: dict[str, Any] = {
        "ssh_hostname": v.hostname(vm_name=vm_name),
        "ssh_port": int(v.port(vm_name=vm_name) or 22),
        "ssh_user": v.user(vm_name=vm_name) or "vagrant",
        **NO_HOST_KEY_CHECK,
    }
    if v.keyfile(vm_name=vm_name):
        data["ssh_key"] = v.keyfile(vm_name=vm_name)
    return data


def host_data(spec: LabSpec, node: NodeSpec, path: Path, connection: dict[str, Any]) -> dict:
    """pyinfra host data for one node: lab facts from the spec plus how to connect."""
    data: dict[str, Any] = {
        "ssh_hostname": node.ip,
        "_sudo": True,
        "lab_spec_path": str(path),
        "lab_name": spec.name,
        "lab_node": node.name,
        "lab_ip": node.ip,
        "lab_role": node.role,
        "lab_distro": node.distro,
    }
    if os.environ.get("SWARMLAB_SSH_USER"):
        data["ssh_user"] = os.environ["SWARMLAB_SSH_USER"]
    if os.environ.get("SWARMLAB_SSH_KEY"):
        data["ssh_key"] = os.environ["SWARMLAB_SSH_KEY"]
    data.update(connection)
    return data


def lab_groups(path: Path | None = None) -> tuple[list[HostEntry], list[HostEntry]]:
    """(managers, workers) host lists for a pyinfra inventory file."""
    path = path or spec_path()
    spec = load_spec(path)
    container = container_connection(spec)
    vagrant_hosts = {} if container else vagrant_connections(spec, path=path)

    def entry(node: NodeSpec) -> HostEntry:
        conn = dict(container or {})
        conn.update(vagrant_hosts.get(node.name, {}))
        return node.name, host_data(spec, node, path, conn)

    return [entry(n) for n in spec.managers], [entry(n) for n in spec.workers]
