"""Run swarmlab's real pyinfra deploys offline, against recorded facts (helper, not a test).

    run = run_deploy(install_docker, spec_path, "node1", facts={DebArch: "amd64"})
    run.op("Docker packages").commands   # -> ["apt-get update", ..., "DEBIAN_FRONTEND=... install ..."]
    run.files["/etc/docker/daemon.json"] # -> uploaded text

How it works (pyinfra 3.10 API mode, no connector is ever used):

* a `State` with an `Inventory` holding every node of the spec, with the host data the real
  inventory (`swarmlab.control.inventory.host_data`) gives it;
* each host's `get_fact` is replaced by a lookup in a dict of recorded facts: key `FactClass`
  (any arguments) or `(FactClass, arg)` for a fact called with one argument (`path=`,
  `command=`, ...; list arguments as tuples), or `FactFn(fn)` to compute the value from the
  arguments (see `present_lines`). Unrecorded facts return the fact's `default()`,
  i.e. a fresh host (no file, no package, no service); `run.queried` lists what was asked;
* `host.run_shell_command` (a command run outside facts and operations, like the swarm join
  token read) is answered from the same `(Command, "command text")` entries; `run.shell`
  records each call with its print_output/print_input flags;
* `server.LinuxDistribution` comes from a recorded /etc/os-release per distro, parsed by
  pyinfra's own fact code;
* the deploy is added with `add_deploy` (prepare phase), then "executed" in pyinfra's operation
  order without a host: every operation's command generator runs again with
  `state.is_executing` set, so `_if=other_op.did_change` conditions are honoured; each
  operation is marked complete with the commands it yielded (a non-empty list is a change,
  as in pyinfra). `FunctionCommand`s (e.g. swarmlab's `fail`) are called; a False result fails
  the host and later operations are not run, like pyinfra does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FileUploadCommand, FunctionCommand, StringCommand
from pyinfra.api.deploy import add_deploy
from pyinfra.api.facts import ShortFactBase
from pyinfra.api.host import Host
from pyinfra.api.state import StateStage
from pyinfra.connectors.util import CommandOutput, OutputLine
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.files import Directory, File, FindInFile, Sha1File
from pyinfra.facts.server import Command, LinuxDistribution

from swarmlab.control.inventory import host_data
from swarmlab.model.spec import load_spec
from swarmlab.provision.factcache import FactBatch

ROOT = Path(__file__).resolve().parents[2]
VMLAB = ROOT / "lab.yaml"  # ubuntu-24.04 x2 + manjaro
LOCAL = ROOT / "labs" / "local.yaml"  # debian-13 x3

# `cat /etc/*-release` as recorded on each distro (LinuxDistribution's command output).
OS_RELEASE: dict[str, str] = {
    "ubuntu-22.04": """/etc/lsb-release
DISTRIB_ID=Ubuntu
DISTRIB_RELEASE=22.04
DISTRIB_CODENAME=jammy
DISTRIB_DESCRIPTION="Ubuntu 22.04.5 LTS"
---
/etc/os-release
PRETTY_NAME="Ubuntu 22.04.5 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.5 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
UBUNTU_CODENAME=jammy
---
""",
    "ubuntu-24.04": """/etc/lsb-release
DISTRIB_ID=Ubuntu
DISTRIB_RELEASE=24.04
DISTRIB_CODENAME=noble
DISTRIB_DESCRIPTION="Ubuntu 24.04.1 LTS"
---
/etc/os-release
PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
UBUNTU_CODENAME=noble
LOGO=ubuntu-logo
---
""",
    "debian-12": """/etc/os-release
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
---
""",
    "debian-13": """/etc/os-release
PRETTY_NAME="Debian GNU/Linux 13 (trixie)"
NAME="Debian GNU/Linux"
VERSION_ID="13"
VERSION="13 (trixie)"
VERSION_CODENAME=trixie
DEBIAN_VERSION_FULL=13.1
ID=debian
HOME_URL="https://www.debian.org/"
---
""",
    # Debian testing: no VERSION_ID, only the codename (recorded on a forky node container)
    "debian-14": """/etc/os-release
PRETTY_NAME="Debian GNU/Linux forky/sid"
NAME="Debian GNU/Linux"
VERSION_CODENAME=forky
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
---
""",
    "manjaro": """/etc/lsb-release
DISTRIB_ID="ManjaroLinux"
DISTRIB_RELEASE="25.0.10"
DISTRIB_CODENAME="Zetar"
DISTRIB_DESCRIPTION="Manjaro Linux"
---
/etc/os-release
NAME="Manjaro Linux"
PRETTY_NAME="Manjaro Linux"
ID=manjaro
ID_LIKE=arch
BUILD_ID=rolling
ANSI_COLOR="32;1;24;144;200"
HOME_URL="https://manjaro.org/"
LOGO=manjarolinux
---
""",
    "fedora-40": """/etc/os-release
NAME="Fedora Linux"
VERSION="40 (Server Edition)"
ID=fedora
VERSION_ID=40
PRETTY_NAME="Fedora Linux 40 (Server Edition)"
---
""",
}

_MISSING = object()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def recorded(fact_cls: type, output: str) -> Any:
    """A fact's value from its recorded command output, parsed by the fact's own `process`.

    A fact derived from a wider one (SwarmInfo: docker info's Swarm section) is recorded as
    the JSON it derives."""
    if issubclass(fact_cls, ShortFactBase):
        text = output.strip()
        return json.loads(text) if text.startswith("{") else {}
    return fact_cls().process(output.strip("\n").splitlines())


def spec_file(directory: Path, distros: Iterable[str] = ("debian-13",) * 3,
              base: Path = LOCAL, **sections: Any) -> Path:
    """Write a variant of a shipped spec and return its path.

    Node distros are replaced in order (fewer distros keep fewer nodes); top-level sections
    are merged (a dict updates the section, anything else replaces it). The file name is
    unique per content, since the deploys cache specs by path.
    """
    data = yaml.safe_load(base.read_text())
    distros = list(distros)
    data["nodes"] = [dict(n, distro=d) for n, d in zip(data["nodes"], distros, strict=False)]
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    text = yaml.safe_dump(data, sort_keys=False)
    path = Path(directory) / f"spec-{sha1(text)[:12]}.yaml"
    path.write_text(text)
    return path


def linux_distribution(distro_key: str) -> dict:
    """The `server.LinuxDistribution` fact for a recorded distro (parsed by pyinfra)."""
    return LinuxDistribution().process(OS_RELEASE[distro_key].splitlines())


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def present_file(path: str, content: str, mode: int = 644, user: str = "root",
                 group: str = "root") -> dict:
    """Facts for a remote file that exists with `content` (mode as pyinfra's octal-digit int)."""
    return {
        (File, path): {"user": user, "group": group, "mode": mode, "size": len(content),
                       "atime": None, "mtime": None, "ctime": None},
        (Sha1File, path): sha1(content),
        (Directory, str(Path(path).parent)): {"user": "root", "group": "root", "mode": 755},
    }


class FactFn:
    """A recorded fact computed from the call's arguments: `FactFn(lambda path, **kw: ...)`."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn


_POSIX_CLASSES = {"[[:space:]]": r"\s", "[[:digit:]]": r"\d", "[[:alnum:]]": "[A-Za-z0-9]"}


def present_lines(files: dict[str, str]) -> dict:
    """Remote files with content, as `files.line` sees them: File/Sha1File plus a FindInFile
    that greps the content (POSIX character classes translated to Python's)."""

    def find(path: str, pattern: str, **_: Any) -> list[str]:
        if path not in files:
            return []
        for posix, py in _POSIX_CLASSES.items():
            pattern = pattern.replace(posix, py)
        return [line for line in files[path].splitlines() if re.search(pattern, line)]

    facts: dict = {FindInFile: FactFn(find)}
    for path, content in files.items():
        facts.update(present_file(path, content))
    return facts


def present_dir(path: str, mode: int = 755, user: str = "root", group: str = "root") -> dict:
    """Facts for a remote directory that exists."""
    return {(Directory, path): {"user": user, "group": group, "mode": mode,
                                "atime": None, "mtime": None, "ctime": None, "size": 4096}}


def present_executables(*paths: str) -> dict:
    """Facts for remote executable files (pyinfra's File fact, mode 755) at each path."""
    return {(File, path): {"user": "root", "group": "root", "mode": 755, "atime": None,
                           "mtime": None, "ctime": None, "size": 1024} for path in paths}


def rootless_scripts() -> dict:
    """Docker's rootless scripts installed where every distro's Docker source puts them."""
    from swarmlab.model.distros import ROOTLESS_TOOLS

    dirs = {t.script_dir for t in ROOTLESS_TOOLS.values() if t.script_dir}
    return present_executables(*(f"{d}/{name}" for d in sorted(dirs)
                                 for name in ("dockerd-rootless.sh", "dockerd-rootless-setuptool.sh")))


@dataclass
class OpResult:
    """One operation as this host would run it."""

    name: str  # full name, deploy prefixes included ("Docker Engine | Docker packages")
    commands: list[str]  # as pyinfra prints/logs them (HiddenValue masked)
    raw_commands: list[str]  # as sent to the host (HiddenValue unmasked)
    files: dict[str, str]  # dest -> uploaded text
    failed: bool = False

    @property
    def short_name(self) -> str:
        return self.name.rsplit(" | ", 1)[-1]

    @property
    def changed(self) -> bool:
        return bool(self.commands)


@dataclass
class DeployRun:
    ops: list[OpResult]
    failed: bool
    logs: list[tuple[int, str]]  # (level, message without colours), DEBUG included
    queried: list[tuple[str, tuple]] = field(default_factory=list)  # facts asked for
    # commands run outside facts and operations: (host, command, print_output, print_input)
    shell: list[tuple[str, str, bool | None, bool | None]] = field(default_factory=list)

    def op(self, name: str) -> OpResult:
        """The one operation whose short name is `name` (else whose full name ends with it)."""
        found = [o for o in self.ops if o.short_name == name] or [
            o for o in self.ops if o.name.endswith(name)]
        if len(found) != 1:
            raise LookupError(f"{len(found)} operations named {name!r}; have: "
                              f"{[o.short_name for o in self.ops]}")
        return found[0]

    def has_op(self, name: str) -> bool:
        return any(o.short_name == name or o.name.endswith(name) for o in self.ops)

    @property
    def commands(self) -> list[str]:
        return [c for o in self.ops for c in o.commands]

    @property
    def raw_commands(self) -> list[str]:
        return [c for o in self.ops for c in o.raw_commands]

    @property
    def files(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for o in self.ops:
            out.update(o.files)
        return out

    @property
    def changed_ops(self) -> list[str]:
        return [o.short_name for o in self.ops if o.changed]

    def messages(self, level: int = logging.WARNING) -> list[str]:
        """Log lines at exactly `level` (WARNING, ERROR, INFO)."""
        return [m for lvl, m in self.logs if lvl == level]

    @property
    def errors(self) -> list[str]:
        return self.messages(logging.ERROR)

    @property
    def warnings(self) -> list[str]:
        return self.messages(logging.WARNING)


def _fact_arg_key(args: tuple, kwargs: dict) -> tuple:
    values = list(args) + [v for k, v in sorted(kwargs.items()) if not k.startswith("_")]
    return tuple(tuple(v) if isinstance(v, list) else v for v in values)


def _install_facts(host: Host, facts: dict, queried: list, shell_log: list | None = None) -> None:
    shell_log = shell_log if shell_log is not None else []

    def get_fact(cls, *args, **kwargs):
        if cls is FactBatch:  # no batch: each fact is answered (and queried) on its own
            return {}
        key = _fact_arg_key(args, kwargs)
        queried.append((cls.__name__, key))
        value: Any = _MISSING
        if len(key) == 1 and (cls, key[0]) in facts:
            value = facts[(cls, key[0])]
        elif key and (cls, key) in facts:
            value = facts[(cls, key)]
        elif cls in facts:
            value = facts[cls]
        if isinstance(value, FactFn):
            return value.fn(*args, **{k: v for k, v in kwargs.items() if not k.startswith("_")})
        if value is not _MISSING:
            return value
        if issubclass(cls, ShortFactBase):  # derived from another fact (Ipv4Addrs, LinuxName)
            return cls().process_data(get_fact(cls.fact, *args, **kwargs))
        return cls().default()

    def run_shell_command(command, *args, **kwargs):
        """A command run directly (not as a fact): answered from `(Command, text)` entries."""
        text = command.get_raw_value() if isinstance(command, StringCommand) else str(command)
        shell_log.append((host.name, text, kwargs.get("print_output"), kwargs.get("print_input")))
        value = facts.get((Command, text))
        if value is None:
            return False, CommandOutput([])
        return True, CommandOutput([OutputLine("stdout", out) for out in value.splitlines()])

    host.get_fact = get_fact  # type: ignore[method-assign]
    host.run_shell_command = run_shell_command  # type: ignore[method-assign]
    host.connected = True


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, _ANSI.sub("", record.getMessage())))


def _command_text(cmd: Any, raw: bool) -> str:
    if isinstance(cmd, StringCommand):
        return cmd.get_raw_value() if raw else cmd.get_masked_value()
    if isinstance(cmd, FileUploadCommand):
        return f"upload {cmd.dest}"
    if isinstance(cmd, FunctionCommand):
        return f"function {cmd.function.__name__}"
    return str(cmd)


def _upload_text(cmd: FileUploadCommand) -> str:
    src = cmd.src
    if hasattr(src, "read"):
        src.seek(0)
        data = src.read()
        src.seek(0)
        return data.decode() if isinstance(data, bytes) else data
    return Path(src).read_text()


def make_state(spec_path: str | Path, host_overrides: dict[str, dict] | None = None) -> State:
    """A State whose inventory is every node of the spec, with the real inventory's host data."""
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    names = []
    for node in spec.nodes:
        data = host_data(spec, node, spec_path, {})
        data.update((host_overrides or {}).get(node.name, {}))
        names.append((node.name, data))
    state = State(Inventory((names, {})), Config(), check_for_changes=True)
    return state


def run_deploy(
    deploy_fn: Callable[..., Any],
    spec_path: str | Path,
    node_name: str,
    facts: dict | None = None,
    *,
    distro_key: str | None = None,
    host_data_overrides: dict | None = None,
    peers: dict[str, dict] | None = None,
    execute: bool = True,
    args: Iterable = (),
) -> DeployRun:
    """Add `deploy_fn` for one node of the spec and collect the commands/files it produces.

    facts: recorded facts for the node (see the module docstring for the keys).
    distro_key: the distro the host reports (default: the node's distro in the spec).
    peers: node name -> facts for other hosts (read by operations at execution time).
    execute: False stops after pyinfra's prepare phase (`_if` conditions not evaluated).
    """
    spec = load_spec(spec_path)
    node = spec.node(node_name)
    overrides = {node_name: host_data_overrides or {}}
    state = make_state(spec_path, overrides)
    queried: list[tuple[str, tuple]] = []
    shell: list[tuple[str, str, bool | None, bool | None]] = []

    for host in state.inventory:
        host_facts = dict((peers or {}).get(host.name, {}))
        if host.name == node_name:
            host_facts = {LinuxDistribution: linux_distribution(distro_key or node.distro)}
            host_facts.update(facts or {})
            _install_facts(host, host_facts, queried, shell)
        else:
            _install_facts(host, host_facts, [], shell)

    host = state.inventory.get_host(node_name)
    capture = _Capture()
    pyinfra_logger = logging.getLogger("pyinfra")
    old_level = pyinfra_logger.level
    pyinfra_logger.setLevel(logging.DEBUG)
    pyinfra_logger.addHandler(capture)
    try:
        state.set_stage(StateStage.Prepare)
        add_deploy(state, deploy_fn, *args, host=host)
        ops, failed = _collect(state, host, execute)
    finally:
        pyinfra_logger.removeHandler(capture)
        pyinfra_logger.setLevel(old_level)
    return DeployRun(ops=ops, failed=failed, logs=capture.records, queried=queried, shell=shell)


def _collect(state: State, host: Host, execute: bool) -> tuple[list[OpResult], bool]:
    order = [h for h in state.get_op_order() if h in state.ops[host]]
    results: list[OpResult] = []
    failed = False
    if execute:
        state.set_stage(StateStage.Execute)
        state.is_executing = True
    with ctx_state.use(state), ctx_host.use(host):
        for op_hash in order:
            if failed:
                break
            op_data = state.ops[host][op_hash]
            name = sorted(state.op_meta[op_hash].names)[0]
            cmds = list(op_data.command_generator())
            ok = True
            if execute:
                for cmd in cmds:
                    if isinstance(cmd, FunctionCommand) and cmd.execute(state, host, {}) is False:
                        ok = False
                op_data.operation_meta.set_complete(ok, cmds, CommandOutput([]))
            results.append(OpResult(
                name=name,
                commands=[_command_text(c, raw=False) for c in cmds],
                raw_commands=[_command_text(c, raw=True) for c in cmds],
                files={c.dest: _upload_text(c) for c in cmds if isinstance(c, FileUploadCommand)},
                failed=not ok,
            ))
            failed = not ok
    if execute:
        state.is_executing = False
    return results, failed
