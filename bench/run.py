"""The live benchmark (issue #15's figures), all on the bench's own labs (bench3, bench12; 10.91.0.0/24):
floor (bare apt) and cold converge, no-change re-run, the same a day later (apt lists aged),
verify, drift repair, the labs/local.yaml shape with its rootless user, and N-node scale
runs against their own N-node floor.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from swarmlab.cli import pipeline
from swarmlab.containerlab import docker_cli, provider
from swarmlab.containerlab.cache import CacheError, remove_cache
from swarmlab.containerlab.image import NodeImage, ensure_image
from swarmlab.model.distros import DISTROS, DOCKER_PACKAGES, FIREWALL_PACKAGES, NETWORK_PACKAGES
from swarmlab.model.spec import LabSpec, load_spec
from swarmlab.model.state import PROJECT_ROOT, lab_state_dir
from tests.live.drift import A_DAY_LATER, DRIFTS, Drift, expand, node_name

SUBNET = "10.91.0.0/24"
GATEWAY = "10.91.0.1"
ADDR_POOL = "10.94.0.0/16"
DISTRO = "debian-13"
SOURCE = "distro"
LOCAL_SPEC = PROJECT_ROOT / "labs" / "local.yaml"
# the drift the repair step breaks (one rule the deploy owns): the ufw rule for 2377/tcp on the manager
REPAIR_CHECK = "test_swarm_ports_reachable_from_another_lab_node"


def spec_dict(nodes: int, name: str) -> dict:
    """A lab spec shaped like labs/local.yaml: 1 manager, the rest workers, one attachable overlay."""
    return {
        "name": name,
        "network": {"subnet": SUBNET, "gateway": GATEWAY, "dns": ["127.0.0.11"], "interface": "eth0"},
        "docker": {"source": SOURCE, "users": ["lab"]},
        "swarm": {"default_addr_pool": [ADDR_POOL],
                  "overlays": [{"name": "benchnet", "subnet": "10.95.0.0/24", "attachable": True}]},
        "firewall": {"backend": "auto"},
        "nodes": [
            {"name": f"node{i}", "distro": DISTRO, "ip": f"10.91.0.{10 + i}",
             "role": "manager" if i == 1 else "worker"}
            for i in range(1, nodes + 1)
        ],
    }


def local_spec_dict(name: str, local: Path = LOCAL_SPEC) -> dict:
    """labs/local.yaml (its rootless user, overlays, node labels) moved onto the bench's addresses.

    Node names, count, distro and roles are local.yaml's (checked to match the bench nodes');
    the swarm's address pool stays the bench's (it is fixed at `swarm init`), overlay subnets
    move to 10.95.N.0/24.
    """
    data = yaml.safe_load(local.read_text())
    bench = spec_dict(len(data["nodes"]), name)
    if [(n["name"], n["distro"], n["role"]) for n in data["nodes"]] != [
            (n["name"], n["distro"], n["role"]) for n in bench["nodes"]]:
        raise ValueError(f"{local} no longer has the bench's node shape; update bench/run.py")
    data["name"] = name
    data["network"] = {**data["network"], "subnet": SUBNET, "gateway": GATEWAY}
    data["swarm"]["default_addr_pool"] = [ADDR_POOL]
    for i, overlay in enumerate(data["swarm"].get("overlays", []), start=1):
        overlay["subnet"] = f"10.95.{i}.0/24"
    for node, bench_node in zip(data["nodes"], bench["nodes"], strict=True):
        node["ip"] = bench_node["ip"]
    return data


def write_spec(nodes: int, name: str, tmp: Path, data: dict | None = None) -> tuple[LabSpec, Path]:
    path = tmp / f"{name}.yaml" if data is None else tmp / f"{name}-local.yaml"
    path.write_text(yaml.safe_dump(data or spec_dict(nodes, name), sort_keys=False))
    return load_spec(path), path.resolve()


def floor_packages(spec: LabSpec) -> list[str]:
    """Exactly what the deploy installs on these nodes (network, Docker, firewall tables)."""
    node = spec.nodes[0]
    distro = DISTROS[node.distro]
    backend = distro.firewall_backend if spec.firewall.backend == "auto" else spec.firewall.backend
    return [
        *NETWORK_PACKAGES[distro.network_backend],
        *DOCKER_PACKAGES[(distro.key, spec.docker_source(node))].install,
        *FIREWALL_PACKAGES[backend],
    ]


def _out(msg: str) -> None:
    print(f"  {msg}", flush=True)


def timed_nodes_up(spec: LabSpec, cache: bool = False, tries: int = 2) -> float:
    """Fresh nodes; floor and cold converge both run without the package cache (same state).

    On a loaded machine twelve node containers can take longer than the provider's readiness
    wait: bringing the lab up again (it keeps the running nodes) is tried once more. Node start
    is timed apart from every figure with a target.
    """
    start = time.monotonic()
    for attempt in range(1, tries + 1):
        try:
            pipeline.nodes_up(spec, out=_out, cache=cache)
            break
        except provider.ProviderError as err:
            if attempt == tries:
                raise
            print(f"  nodes not ready ({err}); waiting for them once more", flush=True)
    return round(time.monotonic() - start, 1)


def floor(spec: LabSpec, packages: list[str]) -> dict:
    """Bare apt-get update + install on all nodes in parallel, via docker exec."""
    names = provider.LabNames(spec.name)
    cmd = "apt-get update -q && apt-get install -y -q --no-install-recommends " + shlex.join(packages)
    per_node: dict[str, float] = {}
    errors: dict[str, str] = {}

    def one(node_name: str) -> None:
        t = time.monotonic()
        proc = subprocess.run(
            ["docker", "exec", "-e", "DEBIAN_FRONTEND=noninteractive", names.container(node_name),
             "sh", "-c", cmd], capture_output=True, text=True,
        )
        per_node[node_name] = round(time.monotonic() - t, 1)
        if proc.returncode:
            errors[node_name] = proc.stderr[-500:]

    start = time.monotonic()
    threads = [threading.Thread(target=one, args=(n.name,)) for n in spec.nodes]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    result = {"install_s": round(time.monotonic() - start, 1), "per_node_s": per_node}
    if errors:
        result["errors"] = errors
    return result


class DeployLogWatch:
    """Timestamp pyinfra's `--> ...` log lines while it runs (the log has no times of its own)."""

    MARKERS = {
        "--> Connecting to hosts": "connect",
        "--> Preparing operation files": "prepare",
        "--> Beginning operation run": "run",
        "--> Results": "results",
    }

    def __init__(self, log: Path) -> None:
        self.log = log
        self.events: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> DeployLogWatch:
        self.log.unlink(missing_ok=True)
        self.start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.end = time.monotonic()
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        pos = 0
        buf = ""
        while True:
            stopping = self._stop.is_set()
            if self.log.exists():
                with self.log.open(errors="replace") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                    pos = fh.tell()
                now = time.monotonic()
                buf += chunk
                *lines, buf = buf.split("\n")
                for line in lines:
                    for marker, key in self.MARKERS.items():
                        if line.startswith(marker):
                            self.events.append((now, key, ""))
                    m = re.match(r"--> Starting operation: (.*)$", line)
                    if m:
                        self.events.append((now, "op", m.group(1).strip()))
            if stopping:
                return
            time.sleep(0.2)

    def on_progress(self, msg: str) -> None:
        """run_deploy's progress callback (where it has one): `· <sub-deploy> (+1.2s)`."""
        m = re.match(r"\s*· (.*) \(\+[\d.]+s\)$", msg)
        if m:
            self.events.append((time.monotonic(), "group", m.group(1)))

    def phases(self) -> dict:
        first = {}
        for t, key, _ in self.events:
            first.setdefault(key, t)
        groups = [(t, name) for t, key, name in self.events if key == "group"]
        ops_count = sum(1 for _, key, _ in self.events if key == "op")
        if groups and first.get("run", self.end) >= groups[0][0]:
            # the log was written in bursts (not live): time sub-deploys from the progress callback
            out: dict = {"before the first operation (start-up, SSH, facts)": round(groups[0][0] - self.start, 1)}
            subs = {name: round((groups[i + 1][0] if i + 1 < len(groups) else self.end) - t, 1)
                    for i, (t, name) in enumerate(groups)}
            return {**out, "sub_deploys": subs, "operations": ops_count}
        marks = [("start-up (python, inventory, config)", self.start, first.get("connect")),
                 ("SSH connect", first.get("connect"), first.get("prepare")),
                 ("fact gathering / prepare", first.get("prepare"), first.get("run")),
                 ("operation run", first.get("run"), first.get("results")),
                 ("disconnect / results", first.get("results"), self.end)]
        out: dict = {k: round(max(b - a, 0.0), 1) for k, a, b in marks if a is not None and b is not None}
        ops = [(t, name) for t, key, name in self.events if key == "op"]
        subs: dict[str, float] = {}
        for i, (t, name) in enumerate(ops):
            nxt = ops[i + 1][0] if i + 1 < len(ops) else first.get("results", self.end)
            group = name.split(" | ")[0]
            subs[group] = subs.get(group, 0.0) + (nxt - t)
        out["sub_deploys"] = {k: round(v, 1) for k, v in subs.items()}
        out["operations"] = len(ops)
        return out


def deploy(spec: LabSpec, path: Path) -> dict:
    log = lab_state_dir(spec.name) / "deploy-swarm.log"
    with DeployLogWatch(log) as watch:
        res = pipeline.run_deploy(spec, path, progress=watch.on_progress)
    phases = watch.phases()
    return {"deploy_s": round(res.seconds, 1), "changed": res.changed, "failed_hosts": res.failed_hosts,
            "operations": phases.pop("operations"), "deploy_phases": phases,
            "changed_ops": res.changed_ops[:40]}


def verify(spec: LabSpec, path: Path) -> dict:
    res = pipeline.run_verify(spec, path)
    cases = [(f"{c.get('classname', '')}::{c.get('name', '')}", float(c.get("time") or 0))
             for c in ET.parse(res.report).getroot().iter("testcase")]
    cases.sort(key=lambda kv: -kv[1])
    return {"seconds": round(res.seconds, 1), "passed": res.passed, "failed": res.failed,
            "skipped": res.skipped, "tests": len(cases),
            "tests_total_s": round(sum(t for _, t in cases), 1),
            "slowest": [(n, round(t, 1)) for n, t in cases[:5]]}


def package_cache(spec: LabSpec, path: Path) -> dict:
    """Cold converge through the shared package cache: emptied first, then warm.

    The cache is not emptied while other labs use it: the empty-cache run is skipped then.
    """
    provider.remove_lab(spec.name)
    out: dict = {}
    states = ["empty", "warm"]
    try:
        remove_cache(exclude=(spec.name,))
    except CacheError as err:
        print(f"  not emptying the package cache: {err}; measuring the warm cache only",
              flush=True)
        out["empty_skipped"] = str(err)
        states = ["warm"]
    for state in states:
        provider.remove_lab(spec.name)
        timed_nodes_up(spec, cache=True)
        run = deploy(spec, path)
        out[f"{state}_cold_deploy_s"] = run["deploy_s"]
        out[f"{state}_failed_hosts"] = run["failed_hosts"]
        print(f"  {state} cache: cold deploy {run['deploy_s']} s", flush=True)
    provider.remove_lab(spec.name)
    if "empty_cold_deploy_s" in out:
        out["warm_over_empty"] = round(out["warm_cold_deploy_s"] / out["empty_cold_deploy_s"], 2)
    return out


def node_shell(spec: LabSpec, node: str, shell: str) -> str:
    """A root shell on one of the lab's node containers (the drift suite's way in)."""
    return docker_cli.docker("exec", provider.LabNames(spec.name).container(node), "sh", "-c", shell)


def day_later(spec: LabSpec, path: Path) -> dict:
    """Age the apt stamp and lists on every node past the cache window (the drift suite's
    A_DAY_LATER), then a deploy re-run: it must change nothing and stay within the no-change target."""
    for node in spec.nodes:
        node_shell(spec, node.name, A_DAY_LATER)
    return deploy(spec, path)


def repair_drift() -> Drift:
    return next(d for d in DRIFTS if d.check == REPAIR_CHECK and d.owned)


def drift_repair(spec: LabSpec, path: Path) -> dict:
    """Break one rule the deploy owns (tests/live/drift.py's row for REPAIR_CHECK), then time
    one deploy re-run and one full verify: the time from a broken rule to a verified lab."""
    drift = repair_drift()
    node = node_name(spec, drift.node)
    node_shell(spec, node, expand(spec, drift.shell))
    run = deploy(spec, path)
    v = verify(spec, path)
    return {"broken": f"{drift.how} on {node}", "check": drift.check,
            "deploy_s": run["deploy_s"], "changed": run["changed"], "changed_ops": run["changed_ops"],
            "failed_hosts": run["failed_hosts"], "deploy_phases": run["deploy_phases"],
            "verify_s": v["seconds"], "verify_passed": v["passed"], "verify_failed": v["failed"],
            "total_s": round(run["deploy_s"] + v["seconds"], 1)}


def local_shape(tmp: Path, name: str) -> dict:
    """labs/local.yaml's shape with its rootless user, on the bench nodes that already run the
    bench spec: one converge adds what local.yaml has more (rootless user, overlays, labels),
    then the no-change re-run that the <= 4 s target is about. No extra cold converge."""
    spec, path = write_spec(0, name, tmp, data=local_spec_dict(name))
    converge = deploy(spec, path)
    print(f"  local shape: converge {converge['deploy_s']} s changed={converge['changed']}", flush=True)
    no_change = deploy(spec, path)
    return {"spec": "labs/local.yaml on the bench addresses", "rootless_users": spec.rootless.users,
            "converge_s": converge["deploy_s"], "converge_changed": converge["changed"],
            "converge_failed_hosts": converge["failed_hosts"], "no_change": no_change}


def scale_run(n: int, tmp: Path, labs: set[str]) -> dict:
    """N fresh nodes: the N-node floor, then fresh nodes again: cold deploy and no-change."""
    spec, path = write_spec(n, f"bench{n}", tmp)
    labs.add(spec.name)
    provider.remove_lab(spec.name)
    floor_start = timed_nodes_up(spec)
    fl = floor(spec, floor_packages(spec))
    print(f"  {n} nodes: floor {fl['install_s']} s", flush=True)
    provider.remove_lab(spec.name)
    node_s = timed_nodes_up(spec)
    c = deploy(spec, path)
    nc = deploy(spec, path)
    print(f"  {n} nodes: cold {c['deploy_s']} s (changed {c['changed']}), no-change {nc['deploy_s']} s "
          f"(changed {nc['changed']})", flush=True)
    provider.remove_lab(spec.name)
    return {"node_start_s": node_s, "floor_node_start_s": floor_start, "floor_install_s": fl["install_s"],
            "floor_errors": fl.get("errors", {}), "cold_deploy_s": c["deploy_s"], "cold_changed": c["changed"],
            "failed_hosts": c["failed_hosts"], "cold_phases": c["deploy_phases"],
            "no_change_s": nc["deploy_s"], "no_change_changed": nc["changed"]}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def bench(scale: list[int], with_package_cache: bool = False) -> dict:
    """The default run: every figure of issue #15 on 3 nodes, then each scale size (not 3)."""
    result: dict = {"lab": "bench3", "nodes": 3, "scale": {}, "package_cache": {},
                    "floor": {}, "cold": {}, "no_change": {}, "day_later": {}, "verify": {},
                    "drift_repair": {}, "local": {}, "load_average": {"start": load_average()}}
    labs: set[str] = set()
    steps = 7 + bool(with_package_cache) + len([n for n in scale if n != 3])
    step = iter(range(1, steps + 1))

    def head(text: str) -> None:
        print(f"==> [{next(step)}/{steps}] {text}  (load {' '.join(map(str, load_average()))})", flush=True)

    with tempfile.TemporaryDirectory(prefix="swarmlab-bench-") as tmpdir:
        tmp = Path(tmpdir)
        spec, path = write_spec(3, "bench3", tmp)
        packages = floor_packages(spec)
        result["packages"] = packages
        try:
            labs.add(spec.name)
            # the node image build is a one-time cost: do it before any timed step
            t = time.monotonic()
            built = ensure_image(NodeImage(DISTRO), log=_out)
            result["image_build_s"] = round(time.monotonic() - t, 1) if built else 0.0
            head(f"floor: fresh nodes + bare apt install of {' '.join(packages)}")
            provider.remove_lab(spec.name)
            start_s = timed_nodes_up(spec)
            result["floor"] = {"node_start_s": start_s, **floor(spec, packages)}
            print(f"  floor install {result['floor']['install_s']} s", flush=True)
            provider.remove_lab(spec.name)

            head("cold converge: fresh nodes -> deploy -> verify")
            cold_start = timed_nodes_up(spec)
            cold = deploy(spec, path)
            print(f"  cold deploy {cold['deploy_s']} s changed={cold['changed']} "
                  f"failed={cold['failed_hosts']}", flush=True)
            v = verify(spec, path)
            result["cold"] = {"node_start_s": cold_start, **cold, "verify_s": v["seconds"],
                              "verify_passed": v["passed"], "verify_failed": v["failed"]}

            head("no-change re-run")
            result["no_change"] = deploy(spec, path)
            print(f"  no-change {result['no_change']['deploy_s']} s changed="
                  f"{result['no_change']['changed']}", flush=True)
            result["scale"]["3"] = {"floor_install_s": result["floor"]["install_s"],
                                    "cold_deploy_s": cold["deploy_s"],
                                    "no_change_s": result["no_change"]["deploy_s"]}

            head("no-change re-run a day later (apt stamp and lists aged 2 days)")
            result["day_later"] = day_later(spec, path)
            print(f"  day later {result['day_later']['deploy_s']} s changed="
                  f"{result['day_later']['changed']}", flush=True)

            head("verify")
            result["verify"] = verify(spec, path)
            print(f"  verify {result['verify']['seconds']} s", flush=True)

            head("drift repair: one broken rule -> deploy re-run -> verify")
            result["drift_repair"] = drift_repair(spec, path)
            r = result["drift_repair"]
            print(f"  drift repair {r['total_s']} s (deploy {r['deploy_s']} s changed={r['changed']}, "
                  f"verify {r['verify_s']} s failed={r['verify_failed']})", flush=True)

            head("labs/local.yaml shape with its rootless user: converge, then no-change re-run")
            result["local"] = local_shape(tmp, spec.name)
            print(f"  local shape no-change {result['local']['no_change']['deploy_s']} s changed="
                  f"{result['local']['no_change']['changed']}", flush=True)
            provider.remove_lab(spec.name)

            if with_package_cache:
                head("package cache: cold converge with an empty, then a warm cache")
                result["package_cache"] = package_cache(spec, path)

            for n in [s for s in scale if s != 3]:
                head(f"scale {n} nodes (1 manager, {n - 1} workers): {n}-node floor, then cold converge")
                try:
                    result["scale"][str(n)] = scale_run(n, tmp, labs)
                except provider.ProviderError as err:  # this size only; the others are kept
                    result["scale"][str(n)] = {"error": f"{type(err).__name__}: {err}"}
                    print(f"  ✗ scale {n}: {err}", flush=True)
        except Exception as err:  # record and still write what was measured
            result["error"] = f"{type(err).__name__}: {err}"
            print(f"  ✗ bench stopped: {result['error']}", flush=True)
        finally:
            for lab in sorted(labs):
                assert lab.startswith("bench")
                provider.remove_lab(lab)
    result["load_average"]["end"] = load_average()
    return result
