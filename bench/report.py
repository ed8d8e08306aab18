"""Bench results -> target evaluation, printed summary, latest.json and latest.png (no Docker here)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# The targets: (key, description, limit). Reported, not asserted.
TARGETS = (
    ("cold_over_floor", "cold converge <= 1.5x floor (ratio)", 1.5),
    ("no_change_s", "no-change re-run <= 5 s (3 nodes)", 5.0),
    ("verify_s", "verify <= 10 s (3 nodes)", 10.0),
    ("scale_12_over_3", "12 nodes <= 1.5x 3-node cold deploy (ratio)", 1.5),
    ("warm_over_empty", "warm-cache cold converge <= 0.5x empty-cache (ratio)", 0.5),
)

REQUIRED_KEYS = ("date", "machine", "lab", "nodes", "packages", "floor", "cold", "no_change",
                 "verify", "scale", "ratios", "targets", "package_cache", "where_time_goes")


def ratios(result: dict) -> dict:
    floor = (result.get("floor") or {}).get("install_s")
    cold = (result.get("cold") or {}).get("deploy_s")
    scale = result.get("scale") or {}
    s3 = (scale.get("3") or {}).get("cold_deploy_s")
    s12 = (scale.get("12") or {}).get("cold_deploy_s")
    return {
        "cold_over_floor": round(cold / floor, 2) if floor and cold else None,
        "scale_12_over_3": round(s12 / s3, 2) if s12 and s3 else None,
    }


def evaluate_targets(result: dict) -> list[dict]:
    r = ratios(result)
    values = {
        "cold_over_floor": r["cold_over_floor"],
        "no_change_s": (result.get("no_change") or {}).get("deploy_s"),
        "verify_s": (result.get("verify") or {}).get("seconds"),
        "scale_12_over_3": r["scale_12_over_3"],
        "warm_over_empty": (result.get("package_cache") or {}).get("warm_over_empty")
        if isinstance(result.get("package_cache"), dict) else None,
    }
    out = []
    for key, text, limit in TARGETS:
        value = values[key]
        status = "not run" if value is None else ("met" if value <= limit else "missed")
        out.append({"key": key, "target": text, "limit": limit, "value": value, "status": status})
    return out


def where_time_goes(result: dict, targets: list[dict]) -> list[str]:
    """Explain missed targets from what was measured (deploy log phases, verify test times)."""
    lines: list[str] = []
    missed = {t["key"] for t in targets if t["status"] == "missed"}
    cold = result.get("cold") or {}
    floor = result.get("floor") or {}
    if "cold_over_floor" in missed:
        lines.append(f"cold deploy {cold.get('deploy_s')} s vs floor apt {floor.get('install_s')} s:")
        lines += _deploy_phases(cold.get("deploy_phases") or {})
    if "no_change_s" in missed:
        nc = result.get("no_change") or {}
        lines.append(f"no-change re-run {nc.get('deploy_s')} s ({nc.get('operations')} operations, "
                     f"changed={nc.get('changed')}):")
        lines += _deploy_phases(nc.get("deploy_phases") or {})
    if "verify_s" in missed:
        v = result.get("verify") or {}
        lines.append(f"verify {v.get('seconds')} s for {v.get('tests')} tests; slowest:")
        lines += [f"  {name}: {sec} s" for name, sec in (v.get("slowest") or [])]
        if v.get("tests_total_s") is not None:
            lines.append(f"  sum of test times {v['tests_total_s']} s; the rest is pytest start-up, "
                         "collection and SSH connection setup")
    if "scale_12_over_3" in missed:
        for n, s in sorted((result.get("scale") or {}).items(), key=lambda kv: int(kv[0])):
            lines.append(f"{n} nodes: cold deploy {s.get('cold_deploy_s')} s, "
                         f"no-change {s.get('no_change_s')} s")
    return lines


def _deploy_phases(phases: dict) -> list[str]:
    if not phases:
        return ["  (no phase timings were recorded)"]
    order = ("before the first operation (start-up, SSH, facts)",
             "start-up (python, inventory, config)", "SSH connect", "fact gathering / prepare",
             "operation run", "disconnect / results")
    lines = [f"  {k}: {phases[k]} s" for k in order if k in phases]
    for name, sec in sorted((phases.get("sub_deploys") or {}).items(), key=lambda kv: -kv[1]):
        lines.append(f"    run: {name}: {sec} s")
    return lines


def finalize(result: dict) -> dict:
    """Fill in ratios, targets and the time attribution."""
    result["ratios"] = ratios(result)
    result["targets"] = evaluate_targets(result)
    result["where_time_goes"] = where_time_goes(result, result["targets"])
    result.setdefault("package_cache", {})
    return result


def summary(result: dict) -> str:
    f, c, n, v = (result.get(k) or {} for k in ("floor", "cold", "no_change", "verify"))
    lines = [
        f"bench {result.get('date')} on {result.get('machine')}, lab {result.get('lab')} "
        f"({result.get('nodes')} nodes)",
        f"  floor (bare apt install of {len(result.get('packages') or [])} packages): "
        f"{f.get('install_s')} s  [node start {f.get('node_start_s')} s]",
        f"  cold converge: node start {c.get('node_start_s')} s, deploy {c.get('deploy_s')} s "
        f"(changed {c.get('changed')}), verify {c.get('verify_s')} s",
        f"  no-change re-run: {n.get('deploy_s')} s, changed {n.get('changed')}",
        f"  verify: {v.get('seconds')} s ({v.get('passed')} passed, {v.get('failed')} failed, "
        f"{v.get('skipped')} skipped)",
    ]
    for size, s in sorted((result.get("scale") or {}).items(), key=lambda kv: int(kv[0])):
        lines.append(f"  scale {size} nodes: cold deploy {s.get('cold_deploy_s')} s, "
                     f"no-change {s.get('no_change_s')} s")
    lines.append(f"  ratios: {result.get('ratios')}")
    lines.append(f"  package cache: {result.get('package_cache')}")
    lines.append("targets (reported, not asserted):")
    for t in result.get("targets") or []:
        lines.append(f"  [{t['status']:>7}] {t['target']}: {t['value']}")
    if result.get("where_time_goes"):
        lines.append("where the time goes (missed targets):")
        lines += [f"  {line}" for line in result["where_time_goes"]]
    return "\n".join(lines)


def chart(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, c, n, v = (result.get(k) or {} for k in ("floor", "cold", "no_change", "verify"))
    bars = [
        ("floor apt", f.get("install_s")),
        ("cold deploy", c.get("deploy_s")),
        ("cold verify", c.get("verify_s")),
        ("no-change", n.get("deploy_s")),
        ("verify", v.get("seconds")),
    ]
    bars = [(k, val) for k, val in bars if val is not None]
    scale = sorted((result.get("scale") or {}).items(), key=lambda kv: int(kv[0]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    ax.bar([k for k, _ in bars], [val for _, val in bars], color="#4c72b0")
    ax.axhline(5, color="#c44e52", ls=":", lw=1, label="no-change target 5 s")
    ax.axhline(10, color="#dd8452", ls=":", lw=1, label="verify target 10 s")
    if f.get("install_s"):
        ax.axhline(1.5 * f["install_s"], color="#55a868", ls="--", lw=1, label="1.5x floor")
    ax.set_ylabel("seconds")
    ax.set_title(f"{result.get('lab')}: {result.get('nodes')} nodes")
    ax.legend(fontsize=7, loc="upper left")
    ax.tick_params(axis="x", labelsize=8)
    ax = axes[1]
    if scale:
        xs = [int(k) for k, _ in scale]
        ax.plot(xs, [s.get("cold_deploy_s") for _, s in scale], "o-", label="cold deploy")
        ax.plot(xs, [s.get("no_change_s") for _, s in scale], "s-", label="no-change")
        ax.set_xticks(xs)
        ax.legend(fontsize=7)
    ax.set_xlabel("nodes")
    ax.set_ylabel("seconds")
    ax.set_title("scale")
    fig.suptitle(f"swarmlab bench {result.get('date')} — {result.get('machine')}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(result: dict, out_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    finalize(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / "latest.json"
    js.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    png = chart(result, out_dir / "latest.png")
    return js, png
