"""The probe workloads of the suite's second part, all started at once when it begins (after the
checks that read rules and state) and waited on by the checks that use them; removed together
at the end of the session.

A workload that could not start fails (or skips) the checks that use it, not the others.
"""

from __future__ import annotations

import shlex

import pytest

from swarmlab.control.parallel import on_each
from swarmlab.verify.probe import IMAGE, LABEL

PUBLISHED_PORT = 18080
WEB = "swarmlab-probe-web"
DNSRR = "swarmlab-probe-dnsrr"
STACK = "swarmlab-probe"
STACK_FILE = "/tmp/swarmlab-probe-stack.yml"
SECRET = "swarmlab-secret-value"
PROBE_CONTAINERS = {"a": "swarmlab-probe-a", "b": "swarmlab-probe-b", "dns": "swarmlab-probe-dns"}

STACK_SPEC = """
services:
  web:
    image: {image}
    command: ["sh", "-c", "cp /run/secrets/probe_secret /www/index.html; httpd -f -p 80 -h /www"]
    secrets: [probe_secret]
    stop_grace_period: 1s
    deploy:
      endpoint_mode: dnsrr
      labels: [{label}]
secrets:
  probe_secret:
    external: true
"""


NO_SWARM = "swarm.enabled is false: the lab has no swarm"


class SwarmWorkloads:
    """Overlay pair, global dnsrr service, stack with a secret; each check waits on its own."""

    def __init__(self, spec, hosts, probe):
        self.spec, self.hosts, self.probe = spec, hosts, probe
        self.manager = hosts[spec.first_manager.name]
        self.nets = [o.name for o in spec.swarm.overlays if o.attachable]
        self.skips: dict[str, str] = {}
        if len(spec.nodes) < 2:
            self.skips["overlay"] = "needs two nodes"
        if not self.nets:
            self.skips["overlay"] = self.skips["dnsrr"] = "no attachable overlay network in the spec"
        if not spec.swarm.enabled:
            self.skips = dict.fromkeys(("overlay", "dnsrr", "stack"), NO_SWARM)
        self.errors: dict[str, BaseException] = {}

    def start(self) -> None:
        starts = {"overlay": self._overlay_pair, "dnsrr": self._dnsrr, "stack": self._stack}
        on_each(self._start_one, [(k, fn) for k, fn in starts.items() if k not in self.skips])

    def _start_one(self, job) -> None:
        name, fn = job
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported by the checks that need this workload
            self.errors[name] = e

    def need(self, name: str) -> None:
        """Skip or fail the calling check when its workload is not there."""
        if name in self.skips:
            pytest.skip(self.skips[name])
        if name in self.errors:
            pytest.fail(f"the {name} probe workload did not start: {self.errors[name]}")

    def _overlay_pair(self) -> None:
        """One probe container on each of two nodes, on every attachable spec overlay."""
        a, b = self.spec.nodes[0], self.spec.nodes[1]
        extra = "".join(f"; docker network connect {shlex.quote(n)} {{c}}" for n in self.nets[1:])

        def run(pair) -> str:
            node, container = pair
            self.probe.run(node.name, container, f"--network {shlex.quote(self.nets[0])}", "sleep 600")
            return self.hosts[node.name].check_output("true" + extra.format(c=container))

        on_each(run, [(a, PROBE_CONTAINERS["a"]), (b, PROBE_CONTAINERS["b"])])

    def _dnsrr(self) -> None:
        net = shlex.quote(self.nets[0])
        self.manager.check_output(
            f"docker service create -d --name {DNSRR} --label {LABEL} --mode global --stop-grace-period 1s "
            f"--endpoint-mode dnsrr --network {net} "
            f"--publish mode=host,published=18081,target=80 {IMAGE} "
            "sh -c 'echo dnsrr-$(hostname) > /www/index.html; httpd -f -p 80 -h /www'"
        )
        self.probe.run(self.spec.nodes[0].name, PROBE_CONTAINERS["dns"], f"--network {net}", "sleep 300")

    def _stack(self) -> None:
        compose = STACK_SPEC.format(image=IMAGE, label=LABEL)
        self.manager.check_output(
            f"docker stack rm {STACK} >/dev/null 2>&1; docker secret rm probe_secret >/dev/null 2>&1; "
            f"printf %s {SECRET} | docker secret create --label {LABEL} probe_secret - && "
            f"printf '%s' {shlex.quote(compose)} > {STACK_FILE} && "
            f"docker stack deploy -c {STACK_FILE} {STACK}"
        )

    def stop(self) -> None:
        """Remove everything at once and wait for it together; the secret last (in use until
        the stack's tasks are gone)."""
        self.probe.remove_services([DNSRR], [STACK])
        rm = f"docker rm -f {' '.join(PROBE_CONTAINERS.values())} >/dev/null 2>&1; true"
        on_each(lambda n: self.hosts[n.name].run(rm), self.spec.nodes[:2])
        self.manager.run(f"rm -f {STACK_FILE}; for i in $(seq 20); do "
                         "docker secret rm probe_secret >/dev/null 2>&1 && break; sleep 1; done")


class PublishedWeb:
    """A web probe publishing PUBLISHED_PORT on every node."""

    def __init__(self, spec, hosts, probe):
        self.spec, self.hosts, self.probe = spec, hosts, probe
        self.errors: dict[str, str] = {}  # node -> why its probe did not start

    def start(self) -> None:
        def one(node) -> None:
            try:
                self.probe.run(node.name, WEB, f"-p {PUBLISHED_PORT}:80",
                               "sh -c 'echo hello-from-$(hostname) > /www/index.html; httpd -f -p 80 -h /www'")
            except AssertionError as e:
                self.errors[node.name] = str(e)

        on_each(one, self.spec.nodes)

    def stop(self) -> None:
        on_each(lambda n: self.hosts[n.name].run(f"docker rm -f {WEB}"), self.spec.nodes)


class Workloads:
    """Every probe workload of the session, started together, stopped together."""

    def __init__(self, spec, hosts, probe):
        self.swarm = SwarmWorkloads(spec, hosts, probe)
        self.web = PublishedWeb(spec, hosts, probe)

    def start(self) -> None:
        on_each(lambda w: w.start(), [self.swarm, self.web])

    def stop(self) -> None:
        on_each(lambda w: w.stop(), [self.swarm, self.web])
