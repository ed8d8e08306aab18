"""The Docker API over TLS on <lab IP>:2376 (`docker.tls`), besides the local socket.

The distros' units start dockerd with `-H fd://`, and dockerd refuses to start with `hosts`
both there and in daemon.json: the listener and its TLS flags go into a systemd drop-in that
repeats the unit's own ExecStart with `-H tcp://<ip>:2376 --tlsverify ...` appended. Switching
`tls` off removes the drop-in and the files; docker restarts whenever the running dockerd's
arguments differ from what the spec asks, or a file it reads changed.

Hand-written: the drop-in (it repeats the unit's ExecStart, read on the node at run time) and
the restart decided from the running dockerd's arguments (pyinfra's `systemd.service` restarts
on a flag, not on a drift); files and directories are pyinfra's.
"""

from __future__ import annotations

from pyinfra import host, logger, state
from pyinfra.api import FunctionCommand, StringCommand, deploy, operation
from pyinfra.facts.files import Directory, File, FileContents
from pyinfra.operations import files

from swarmlab.control import certs as tls
from swarmlab.model.spec import LabSpec
from swarmlab.provision.autolock import unlock_if_locked
from swarmlab.provision.context import declare_lab_facts, lab_node, lab_spec
from swarmlab.provision.docker import DAEMON_JSON, daemon_config, running_drift
from swarmlab.provision.factcache import Request
from swarmlab.provision.facts import DockerDaemonState, DockerdRuntime
from swarmlab.provision.ops import DOCKER_RESTART, changed
from swarmlab.provision.prefetch import file_facts, register_facts
from swarmlab.provision.shell import line, q

DROPIN = "/etc/systemd/system/docker.service.d/swarmlab-tls.conf"


def listener_args(ip: str) -> list[str]:
    """dockerd flags for the TLS listener (the IP is validated by the spec)."""
    return [f"-H tcp://{ip}:{tls.TLS_PORT}", "--tlsverify", f"--tlscacert={tls.NODE_CA}",
            f"--tlscert={tls.NODE_CERT}", f"--tlskey={tls.NODE_KEY}"]


def dropin_text(execstart: str, ip: str) -> str:
    return (
        "# Managed by swarmlab (docker.tls): the Docker API over TLS on the lab address.\n"
        "[Service]\nExecStart=\n"
        f"ExecStart={execstart} {' '.join(listener_args(ip))}\n"
    )


def listener_drift(args: list[str], ip: str | None) -> str | None:
    """Why the running dockerd's TCP listener differs from the spec (None when it matches);
    `ip` None: no listener wanted."""
    joined = " ".join(args)
    if ip is None:  # only swarmlab's own listener is removed (a user's other flags stay)
        return "dockerd still serves the TLS listener (docker.tls is off)" \
            if f"--tlscacert={tls.NODE_CA}" in joined else None
    want = " ".join(listener_args(ip)).replace("-H tcp", "tcp")
    have = joined.replace("-H tcp", "tcp")
    if not args:
        return None  # not running: the docker service operation starts it with the drop-in
    return None if want in have else f"dockerd runs without {want}"


@operation()
def docker_restarted_for_tls(ip: str | None, file_ops: list, daemon_json_rewritten: bool = False):
    """daemon-reload + restart docker when its listener differs from the spec, or a file it
    reads at start (drop-in, certificates, daemon.json) changes in this run."""
    runtime = host.get_fact(DockerdRuntime)
    why = listener_drift(runtime.get("args") or [], ip)
    if why is None and any(changed(op) for op in file_ops):
        why = "the TLS drop-in or certificates changed"
    if why is None and daemon_json_rewritten and runtime.get("args"):
        # keys `docker info` does not show (icc, userland-proxy...): the Docker Engine step
        # rewrites the file but sees no running drift
        why = "daemon.json is rewritten in this run"
    if why is None:
        host.noop("dockerd serves the Docker API as the spec says")
        return
    if state.is_executing:
        logger.info(f"{host.print_prefix}restarting docker: {why}")
    yield "systemctl daemon-reload"
    yield from DOCKER_RESTART


@operation()
def swarm_unlocked_after_restart(will_restart: bool):
    """A manager of an autolocked swarm is locked after docker restarts: unlock it at once
    with the key from the control machine (stdin, never argv), so the run goes on."""
    spec = lab_spec()
    if not (will_restart and spec.swarm.autolock and lab_node().role == "manager"):
        host.noop("no autolocked manager restarts here")
        return

    def _unlock(state, host) -> bool:
        unlock_if_locked(host, spec)
        return True

    yield FunctionCommand(_unlock, (), {})


def _write_local(node):
    """Control-machine side (prepare time): CA, this node's server certificate, contexts."""
    spec = lab_spec()
    directory = tls.tls_dir(spec.name)
    server = tls.ensure_server_cert(directory, spec.name, node)
    tls.write_contexts(spec)
    return server


@operation()
def tls_dropin(ip: str):
    """The drop-in: the unit's own ExecStart (read on the node at execution time, since
    Docker may be installed in this very run) with the TLS listener appended."""
    runtime = host.get_fact(DockerdRuntime)
    have = host.get_fact(FileContents, path=DROPIN)
    if runtime.get("execstart") and have is not None and \
            "\n".join(have) + "\n" == dropin_text(runtime["execstart"], ip):
        host.noop("the TLS drop-in is as the spec says")
        return
    header = "# Managed by swarmlab (docker.tls): the Docker API over TLS on the lab address."
    yield line(
        'f=$(systemctl show -p FragmentPath --value docker.service) &&',
        'e=$(sed -n "s/^ExecStart=\\(..*\\)$/\\1/p" "$f" | tail -n 1) && [ -n "$e" ] &&',
        "mkdir -p /etc/systemd/system/docker.service.d &&",
        "printf '%s\\n'", q(header), q("[Service]"), q("ExecStart="),
        StringCommand('"ExecStart=$e "', q(" ".join(listener_args(ip))), _separator=""),
        ">", q(DROPIN + ".tmp"), "&&", "chmod 0644", q(DROPIN + ".tmp"), "&&",
        "mv", q(DROPIN + ".tmp"), q(DROPIN),
    )


def tls_facts(spec: LabSpec) -> list[Request]:
    """What this step reads on a node (declared for the lab's fact batch)."""
    out: list[Request] = [(DockerDaemonState, {}),
                          (FileContents, {"path": DAEMON_JSON})]
    if spec.docker.tls:
        out += [(Directory, {"path": tls.NODE_TLS_DIR}), (FileContents, {"path": DROPIN})]
        for dest in (tls.NODE_CA, tls.NODE_CERT, tls.NODE_KEY):
            out += file_facts(dest)
    else:
        out += [(File, {"path": DROPIN}), (Directory, {"path": tls.NODE_TLS_DIR})]
    return out


@deploy("Docker API over TLS")
def docker_tls() -> None:
    declare_lab_facts()
    spec = lab_spec()
    node = lab_node()
    ops = []
    if spec.docker.tls:
        server = _write_local(node)
        ops.append(files.directory(name="/etc/docker/tls", path=tls.NODE_TLS_DIR, mode="0750",
                                   user="root", group="root"))
        for src, dest, mode in ((server.ca, tls.NODE_CA, "0444"), (server.cert, tls.NODE_CERT, "0444"),
                                (server.key, tls.NODE_KEY, "0400")):
            ops.append(files.put(name=f"TLS {dest}", src=str(src), dest=dest, mode=mode,
                                 user="root", group="root"))
        ops.append(tls_dropin(name="dockerd TLS listener drop-in", ip=node.ip))
        ip = node.ip
    else:
        ops.append(files.file(name="no TLS drop-in", path=DROPIN, present=False))
        ops.append(files.directory(name="no /etc/docker/tls", path=tls.NODE_TLS_DIR, present=False))
        ip = None
    daemon = host.get_fact(DockerDaemonState)
    json_restart = bool(daemon.get("info")) and bool(running_drift(daemon_config(spec), daemon))
    restart = docker_restarted_for_tls(name="dockerd serves the spec's Docker API", ip=ip, file_ops=ops,
                                       daemon_json_rewritten=not json_restart and _json_differs(spec))
    swarm_unlocked_after_restart(name="swarm manager unlocked after a docker restart",
                                 will_restart=changed(restart) or json_restart)


def _json_differs(spec) -> bool:
    """daemon.json (before this run) is not the spec's: the Docker Engine step rewrites it."""
    import json

    have = host.get_fact(FileContents, path=DAEMON_JSON)
    try:
        return have is not None and json.loads("\n".join(have)) != daemon_config(spec)
    except ValueError:
        return True


register_facts(__name__, 50, lambda spec, node, distro: tls_facts(spec))
