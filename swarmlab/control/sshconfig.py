"""The one OpenSSH config writer: pyinfra host data -> `Host` blocks.

pyinfra connects with its own client from host data (`ssh_hostname`, `ssh_port`, `ssh_user`,
`ssh_key`, `ssh_strict_host_key_checking`, `ssh_known_hosts_file`: the inventory's entries).
The OpenSSH users (testinfra's ssh backend in the verification and the report, `swarmlab ssh`,
the reachability check) read the same entries through this file, so both clients connect the
same way.

The user's own `~/.ssh/config` reaches both the same way too: pyinfra looks the node's address
(`ssh_hostname`) up in it; this writer asks OpenSSH what that file sets for the address
(`ssh -G`) and adds each option the host data does not set (User, Port, IdentityFile,
ProxyJump, ...) to the node's block. The SSH agent (`SSH_AUTH_SOCK`) serves both clients.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# One master connection per host, shared by every OpenSSH user of the lab; testinfra opens it
# (ControlMaster=auto, ControlPersist from its URL). %C keeps the socket path short.
CONTROL_PATH = "/tmp/swarmlab-cm-%C"
LAB_CONFIG = "ssh_config"  # a lab's config, in its state dir (written by `up` and `swarmlab ssh`)
# options of the user's ~/.ssh/config carried into the blocks (ssh -G's lower-case names)
USER_OPTIONS = {"user": "User", "port": "Port", "identityfile": "IdentityFile",
                "identitiesonly": "IdentitiesOnly", "identityagent": "IdentityAgent",
                "certificatefile": "CertificateFile", "proxyjump": "ProxyJump",
                "forwardagent": "ForwardAgent"}
USER_CONFIG = Path("~/.ssh/config")
DATA_OPTIONS = {"user": "ssh_user", "port": "ssh_port", "identityfile": "ssh_key"}


def _resolved(config: str, address: str) -> dict[str, list[str]]:
    try:
        out = subprocess.run(["ssh", "-G", "-F", config, address], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    values: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key in USER_OPTIONS:
            values.setdefault(key, []).append(value)
    return values


def user_options(address: str, data: Mapping[str, Any] | None = None,
                 config: Path | None = None) -> list[tuple[str, str]]:
    """What the user's SSH config (`~/.ssh/config`) sets for `address` beyond OpenSSH's defaults,
    leaving out the options the host data `data` sets itself."""
    config = (config or USER_CONFIG).expanduser()
    if not config.is_file():
        return []
    theirs, default = _resolved(str(config), address), _resolved("/dev/null", address)
    data = data or {}
    out = []
    for key, values in theirs.items():
        if DATA_OPTIONS.get(key) in data and data.get(DATA_OPTIONS[key]):
            continue
        out += [(USER_OPTIONS[key], v) for v in values
                if v not in default.get(key, []) and not any(c in v for c in '"\n')]
    return out


def _value(value: object) -> str:
    """An option value; quoted when it holds a space (e.g. a key path under `my vm/`)."""
    text = str(value)
    if any(c in text for c in '"\n'):
        raise ValueError(f"unusable value in an SSH config: {text!r}")
    return f'"{text}"' if any(c.isspace() for c in text) else text


def host_block(name: str, data: Mapping[str, Any]) -> list[str]:
    """The `Host` block of one inventory entry."""
    options: list[tuple[str, object]] = [("HostName", data["ssh_hostname"])]
    options += [(opt, data[key]) for opt, key in
                (("Port", "ssh_port"), ("User", "ssh_user"), ("IdentityFile", "ssh_key"))
                if data.get(key)]
    if data.get("ssh_strict_host_key_checking") == "off":
        options += [("StrictHostKeyChecking", "no"),
                    ("UserKnownHostsFile", data.get("ssh_known_hosts_file") or "/dev/null")]
    options += user_options(str(data["ssh_hostname"]), data)
    options += [("LogLevel", "ERROR"), ("ControlPath", CONTROL_PATH)]
    return [f"Host {_value(name)}", *(f"  {opt} {_value(v)}" for opt, v in options), ""]


def write_ssh_config(entries: Iterable[tuple[str, Mapping[str, Any]]], path: Path | None = None) -> Path:
    """Write the blocks of `entries` (inventory `(name, host data)` pairs) to `path`, or to a
    new temporary file the caller removes; return the path."""
    text = "\n".join(line for name, data in entries for line in host_block(name, data))
    if path is None:
        fd, tmp = tempfile.mkstemp(prefix="swarmlab-ssh-", suffix=".config")
        with open(fd, "w") as fh:
            fh.write(text)
        return Path(tmp)
    path.write_text(text)
    return path


def testinfra_hosts(entries: list[tuple[str, Mapping[str, Any]]]) -> tuple[dict[str, Any], Path]:
    """testinfra hosts (ssh backend, sudo, one master connection kept 120 s) of inventory
    entries, and their temporary config file, which the caller removes when done."""
    import testinfra

    config = write_ssh_config(entries)
    return {name: testinfra.get_host(f"ssh://{name}?ssh_config={config}&controlpersist=120&sudo=true")
            for name, _ in entries}, config
