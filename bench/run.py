"""The live benchmark: floor (bare apt), cold converge, no-change re-run, verify, scale."""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from swarmlab import pipeline
from swarmlab.containerlab import provider
from swarmlab.containerlab.cache import CacheError, remove_cache
from swarmlab.containerlab.image import NodeImage, ensure_image
from swarmlab.distros import DISTROS, DOCKER_PACKAGES, FIREWALL_PACKAGES, NETWORK_PACKAGES
from swarmlab.spec import LabSpec, load_spec
from swarmlab.state import lab_state_dir

SUBNET = "10.91.0.0/24"
DISTRO = "debian-13"
SOURCE = "distro"


def spec_dict(nodes: int, name: str) -> dict:
    """A lab spec shaped like labs/local.yaml: 1 manager, the rest workers, one attachable overlay."""
    return {
        "name": name,
        "network": {"subnet": SUBNET, "gateway": "10.91.0.1", "dns": ["127.0.0.11"], "interface": "eth0"},
        "docker": {"source": SOURCE, "users": ["lab"]},
        "swarm": {"default_addr_pool": ["10.94.0.0/16"],
                  "overlays": [{"name": "benchnet", "subnet": "10.95.0.0/24", "attachable": True}]},
        "firewall": {"backend": "auto"},
        "nodes": [
            {"name": f"node{i}", "distro": DISTRO, "ip": f"10.91.0.{10 + i}",
             "role": "manager" if i == 1 else "worker"}
            for i in range(1, nodes + 1)
        ],
    }


def write_spec(nodes: int, name: str, tmp: Path) -> tuple[LabSpec, Path]:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec_dict(nodes, name), sort_keys=False))
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


def timed_nodes_up(spec: LabSpec, cache: bool = False) -> float:
    """Fresh nodes; floor and cold converge both run without the package cache (same state)."""
    start = time.monotonic()
    pipeline.nodes_up(spec, out=_out, cache=cache)
    return round(time.monotonic() - start, 1)


def floor(spec: LabSpec, packages: list[str]) -> dict:
    """Bare apt-get update + install on all nodes in parallel, via docker exec."""
    names = provider.LabNames(spec.name)
    cmd = f"apt-get update -q && apt-get install -y -q --no-install-recommends {' '.join(packages)}"
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


def bench(scale: list[int]) -> dict:
    result: dict = {"lab": "bench3", "nodes": 3, "scale": {}, "package_cache": {},
                    "floor": {}, "cold": {}, "no_change": {}, "verify": {}}
    labs: set[str] = set()
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
            print(f"==> [1/6] floor: fresh nodes + bare apt install of {' '.join(packages)}", flush=True)
            provider.remove_lab(spec.name)
            start_s = timed_nodes_up(spec)
            result["floor"] = {"node_start_s": start_s, **floor(spec, packages)}
            print(f"  floor install {result['floor']['install_s']} s", flush=True)
            provider.remove_lab(spec.name)

            print("==> [2/6] cold converge: fresh nodes -> deploy -> verify", flush=True)
            cold_start = timed_nodes_up(spec)
            cold = deploy(spec, path)
            print(f"  cold deploy {cold['deploy_s']} s changed={cold['changed']} "
                  f"failed={cold['failed_hosts']}", flush=True)
            v = verify(spec, path)
            result["cold"] = {"node_start_s": cold_start, **cold, "verify_s": v["seconds"],
                              "verify_passed": v["passed"], "verify_failed": v["failed"]}

            print("==> [3/6] no-change re-run", flush=True)
            result["no_change"] = deploy(spec, path)
            print(f"  no-change {result['no_change']['deploy_s']} s changed="
                  f"{result['no_change']['changed']}", flush=True)

            print("==> [4/6] verify", flush=True)
            result["verify"] = verify(spec, path)
            print(f"  verify {result['verify']['seconds']} s", flush=True)
            provider.remove_lab(spec.name)
            result["scale"]["3"] = {"cold_deploy_s": cold["deploy_s"],
                                    "no_change_s": result["no_change"]["deploy_s"]}

            print("==> [5/6] package cache: cold converge with an empty, then a warm cache", flush=True)
            result["package_cache"] = package_cache(spec, path)

            for n in [s for s in scale if s != 3]:
                print(f"==> [6/6] scale {n} nodes (1 manager, {n - 1} workers)", flush=True)
                sspec, spath = write_spec(n, f"bench{n}", tmp)
                labs.add(sspec.name)
                provider.remove_lab(sspec.name)
                node_s = timed_nodes_up(sspec)
                c = deploy(sspec, spath)
                nc = deploy(sspec, spath)
                result["scale"][str(n)] = {"node_start_s": node_s, "cold_deploy_s": c["deploy_s"],
                                           "cold_changed": c["changed"], "failed_hosts": c["failed_hosts"],
                                           "no_change_s": nc["deploy_s"], "no_change_changed": nc["changed"]}
                print(f"  {n} nodes: cold {c['deploy_s']} s, no-change {nc['deploy_s']} s", flush=True)
                provider.remove_lab(sspec.name)
        except Exception as err:  # record and still write what was measured
            result["error"] = f"{type(err).__name__}: {err}"
            print(f"  ✗ bench stopped: {result['error']}", flush=True)
        finally:
            for lab in sorted(labs):
                assert lab.startswith("bench")
                provider.remove_lab(lab)
    return result
