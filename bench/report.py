"""Bench results -> target evaluation, printed summary, latest.json, latest.png and docs/benchmarks.md's
table (no Docker here). Every figure is read from the result; nothing is hard-coded."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# Issue #15's targets: (key, description, limit). Reported, never asserted. A re-run target also
# needs changed=0, verify needs no failure, the drift repair a repairing re-run and a green verify.
TARGETS = (
    ("cold_over_floor", "cold converge <= 1.3x floor (3 nodes)", 1.3),
    ("no_change_s", "no-change re-run <= 3 s, changed=0 (bench spec, 3 nodes)", 3.0),
    ("day_later_s", "no-change a day later (apt lists aged) <= 3 s, changed=0", 3.0),
    ("local_no_change_s", "no-change <= 4 s, changed=0 (labs/local.yaml shape + rootless user)", 4.0),
    ("verify_s", "verify <= 8 s, 0 failed (3 nodes)", 8.0),
    ("scale_12_over_floor", "12 nodes cold <= 1.3x the 12-node floor (ratio)", 1.3),
    ("drift_repair_s", "drift repair: re-run + verify <= 11 s (derived: 3 s + 8 s; no target of its own)",
     11.0),
    ("warm_over_empty", "warm-cache cold converge <= 0.5x empty-cache (ratio; --package-cache)", 0.5),
)

REQUIRED_KEYS = ("date", "machine", "lab", "nodes", "packages", "floor", "cold", "no_change",
                 "day_later", "verify", "drift_repair", "local", "scale", "ratios", "targets",
                 "package_cache", "where_time_goes")

README_BEGIN = ("<!-- bench table: written by `python -m bench.readme` from bench/results/latest.json;"
                " do not edit by hand -->")
README_END = "<!-- end of bench table -->"


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def ratios(result: dict) -> dict:
    scale = result.get("scale") or {}
    s3, s12 = scale.get("3") or {}, scale.get("12") or {}
    return {
        "cold_over_floor": _ratio((result.get("cold") or {}).get("deploy_s"),
                                  (result.get("floor") or {}).get("install_s")),
        "scale_12_over_floor": _ratio(s12.get("cold_deploy_s"), s12.get("floor_install_s")),
        "scale_12_over_3": _ratio(s12.get("cold_deploy_s"), s3.get("cold_deploy_s")),
        "floor_12_over_3": _ratio(s12.get("floor_install_s"), s3.get("floor_install_s")),
    }


def _rerun(run: dict) -> tuple[float | None, str]:
    """A no-change re-run's seconds and what else it must hold (changed=0, no failed host)."""
    problems = []
    if run.get("changed"):
        problems.append(f"changed={run['changed']}")
    if run.get("failed_hosts"):
        problems.append(f"failed hosts {','.join(run['failed_hosts'])}")
    return run.get("deploy_s"), "; ".join(problems)


def _values(result: dict) -> dict[str, tuple[float | None, str]]:
    """key -> (value, problem); a problem (e.g. "changed=2") misses the target whatever the value."""
    r = ratios(result)
    v = result.get("verify") or {}
    d = result.get("drift_repair") or {}
    drift_problems = []
    if d and not d.get("changed"):
        drift_problems.append("the re-run repaired nothing")
    if d.get("verify_failed"):
        drift_problems.append(f"verify failed={d['verify_failed']}")
    cache = result.get("package_cache") if isinstance(result.get("package_cache"), dict) else {}
    return {
        "cold_over_floor": (r["cold_over_floor"], ""),
        "no_change_s": _rerun(result.get("no_change") or {}),
        "day_later_s": _rerun(result.get("day_later") or {}),
        "local_no_change_s": _rerun((result.get("local") or {}).get("no_change") or {}),
        "verify_s": (v.get("seconds"), f"failed={v['failed']}" if v.get("failed") else ""),
        "scale_12_over_floor": (r["scale_12_over_floor"], ""),
        "drift_repair_s": (d.get("total_s"), "; ".join(drift_problems)),
        "warm_over_empty": (cache.get("warm_over_empty"), ""),
    }


def evaluate_targets(result: dict) -> list[dict]:
    values = _values(result)
    out = []
    for key, text, limit in TARGETS:
        value, problem = values[key]
        if value is None:
            status = "not run"
        else:
            status = "met" if value <= limit and not problem else "missed"
        out.append({"key": key, "target": text, "limit": limit, "value": value, "status": status,
                    **({"problem": problem} if problem and value is not None else {})})
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
    reruns = (("no_change_s", "no-change re-run", result.get("no_change") or {}),
              ("day_later_s", "no-change a day later", result.get("day_later") or {}),
              ("local_no_change_s", "local shape no-change (rootless user)",
               (result.get("local") or {}).get("no_change") or {}))
    for key, label, run in reruns:
        if key in missed:
            lines.append(f"{label} {run.get('deploy_s')} s ({run.get('operations')} operations, "
                         f"changed={run.get('changed')}):")
            lines += _deploy_phases(run.get("deploy_phases") or {})
            lines += [f"  changed: {op}" for op in (run.get("changed_ops") or [])[:10]]
    if "verify_s" in missed:
        lines += _verify_lines(result.get("verify") or {})
    if "drift_repair_s" in missed:
        d = result.get("drift_repair") or {}
        lines.append(f"drift repair {d.get('total_s')} s after {d.get('broken')}: deploy re-run "
                     f"{d.get('deploy_s')} s (changed={d.get('changed')}) + verify {d.get('verify_s')} s "
                     f"(failed={d.get('verify_failed')}); the re-run:")
        lines += _deploy_phases(d.get("deploy_phases") or {})
        lines += [f"  changed: {op}" for op in (d.get("changed_ops") or [])[:10]]
    if "scale_12_over_floor" in missed:
        r = ratios(result)
        for n, s in sorted((result.get("scale") or {}).items(), key=lambda kv: int(kv[0])):
            lines.append(f"{n} nodes: floor {s.get('floor_install_s')} s, cold deploy {s.get('cold_deploy_s')} s, "
                         f"no-change {s.get('no_change_s')} s")
        lines.append(f"  12-node floor / 3-node floor = {r['floor_12_over_3']}x (the bare apt work alone); "
                     "12-node cold deploy:")
        lines += _deploy_phases(((result.get("scale") or {}).get("12") or {}).get("cold_phases") or {})
    return lines


def _verify_lines(v: dict) -> list[str]:
    lines = [f"verify {v.get('seconds')} s for {v.get('tests')} tests; slowest:"]
    lines += [f"  {name}: {sec} s" for name, sec in (v.get("slowest") or [])]
    if v.get("tests_total_s") is not None:
        lines.append(f"  sum of test times {v['tests_total_s']} s; the rest is pytest start-up, "
                     "collection and SSH connection setup")
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
    for key in ("day_later", "drift_repair", "local", "package_cache"):
        result.setdefault(key, {})
    result["ratios"] = ratios(result)
    result["targets"] = evaluate_targets(result)
    result["where_time_goes"] = where_time_goes(result, result["targets"])
    return result


def summary(result: dict) -> str:
    f, c, n, v = (result.get(k) or {} for k in ("floor", "cold", "no_change", "verify"))
    dl, d, loc = (result.get(k) or {} for k in ("day_later", "drift_repair", "local"))
    lines = [
        f"bench {result.get('date')} on {result.get('machine')}, lab {result.get('lab')} "
        f"({result.get('nodes')} nodes), {result.get('bench_s')} s in all, load average "
        f"{(result.get('load_average') or {}).get('start')} -> {(result.get('load_average') or {}).get('end')}",
        f"  floor (bare apt install of {len(result.get('packages') or [])} packages): "
        f"{f.get('install_s')} s  [node start {f.get('node_start_s')} s]",
        f"  cold converge: node start {c.get('node_start_s')} s, deploy {c.get('deploy_s')} s "
        f"(changed {c.get('changed')}), verify {c.get('verify_s')} s",
        f"  no-change re-run: {n.get('deploy_s')} s, changed {n.get('changed')}",
        f"  a day later: {dl.get('deploy_s')} s, changed {dl.get('changed')}",
        f"  verify: {v.get('seconds')} s ({v.get('passed')} passed, {v.get('failed')} failed, "
        f"{v.get('skipped')} skipped)",
        f"  drift repair: {d.get('total_s')} s = deploy {d.get('deploy_s')} s (changed {d.get('changed')}) "
        f"+ verify {d.get('verify_s')} s (failed {d.get('verify_failed')})",
        f"  local shape: converge {loc.get('converge_s')} s (changed {loc.get('converge_changed')}), "
        f"no-change {(loc.get('no_change') or {}).get('deploy_s')} s, "
        f"changed {(loc.get('no_change') or {}).get('changed')}",
    ]
    for size, s in sorted((result.get("scale") or {}).items(), key=lambda kv: int(kv[0])):
        lines.append(f"  scale {size} nodes: floor {s.get('floor_install_s')} s, cold deploy "
                     f"{s.get('cold_deploy_s')} s, no-change {s.get('no_change_s')} s")
    lines.append(f"  ratios: {result.get('ratios')}")
    if result.get("package_cache"):
        lines.append(f"  package cache: {result.get('package_cache')}")
    if result.get("error"):
        lines.append(f"  error: {result['error']}")
    lines.append("targets (reported, not asserted):")
    for t in result.get("targets") or []:
        problem = f" ({t['problem']})" if t.get("problem") else ""
        lines.append(f"  [{t['status']:>7}] {t['target']}: {t['value']}{problem}")
    if result.get("where_time_goes"):
        lines.append("where the time goes (missed targets):")
        lines += [f"  {line}" for line in result["where_time_goes"]]
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value} s"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value}x"


def markdown(result: dict) -> str:
    """docs/benchmarks.md's table and closing note, from one result (latest.json)."""
    result = finalize(dict(result))
    f, c, n, v = (result.get(k) or {} for k in ("floor", "cold", "no_change", "verify"))
    dl, d, loc = (result.get(k) or {} for k in ("day_later", "drift_repair", "local"))
    lnc = loc.get("no_change") or {}
    r = result["ratios"]
    s12 = (result.get("scale") or {}).get("12") or {}
    t = {x["key"]: x for x in result["targets"]}

    def row(measure: str, value: str, key: str | None = None) -> str:
        target = t[key] if key else None
        text = target["target"] if target else "reported"
        status = target["status"] if target else ""
        return f"| {measure} | {value} | {text} | {status} |"

    load = result.get("load_average") or {}
    minutes, seconds = divmod(int(result.get("bench_s") or 0), 60)
    lines = [
        f"Latest run: {result.get('date')}, {result.get('machine')}, `{result.get('command', 'python -m bench')}`, "
        f"{minutes} min {seconds} s in all, load average (1/5/15 min) {load.get('start')} at the start, "
        f"{load.get('end')} at the end.",
        "",
        "| measure | result | target | |",
        "|---|---|---|---|",
        row("floor: bare apt install, 3 nodes", _s(f.get("install_s"))),
        row("cold converge (deploy), 3 nodes",
            f"{_s(c.get('deploy_s'))} ({c.get('changed')} changed) = {_x(r['cold_over_floor'])} floor",
            "cold_over_floor"),
        row("no-change re-run, 3 nodes", f"{_s(n.get('deploy_s'))}, changed={n.get('changed')}", "no_change_s"),
        row("no-change a day later, 3 nodes", f"{_s(dl.get('deploy_s'))}, changed={dl.get('changed')}",
            "day_later_s"),
        row("no-change, labs/local.yaml shape with rootless `"
            + ", ".join(loc.get("rootless_users") or []) + "`",
            f"{_s(lnc.get('deploy_s'))}, changed={lnc.get('changed')} (converging the bench lab to it: "
            f"{_s(loc.get('converge_s'))}, {loc.get('converge_changed')} changed)", "local_no_change_s"),
        row("verify, 3 nodes", f"{_s(v.get('seconds'))} ({v.get('passed')} passed, {v.get('failed')} failed, "
            f"{v.get('skipped')} skipped)", "verify_s"),
        row(f"drift repair: {d.get('broken', 'one broken rule')}",
            f"{_s(d.get('total_s'))} = re-run {_s(d.get('deploy_s'))} (changed={d.get('changed')}) + verify "
            f"{_s(d.get('verify_s'))} (failed={d.get('verify_failed')})", "drift_repair_s"),
        row("floor: bare apt install, 12 nodes",
            f"{_s(s12.get('floor_install_s'))} = {_x(r['floor_12_over_3'])} the 3-node floor"),
        row("12 nodes cold / 12-node floor",
            f"{_s(s12.get('cold_deploy_s'))} / {_s(s12.get('floor_install_s'))} = {_x(r['scale_12_over_floor'])}",
            "scale_12_over_floor"),
        row("12 nodes cold / 3 nodes cold",
            f"{_s(s12.get('cold_deploy_s'))} / {_s(c.get('deploy_s'))} = {_x(r['scale_12_over_3'])} "
            f"(12-node no-change {_s(s12.get('no_change_s'))}, changed={s12.get('no_change_changed')})"),
    ]
    lines += [f"| scale {n} nodes | not measured: `{s['error']}` | | |"
              for n, s in sorted((result.get("scale") or {}).items(), key=lambda kv: int(kv[0])) if s.get("error")]
    cache = result.get("package_cache") or {}
    if cache:
        lines.append(row("cold converge, warm / empty package cache",
                         f"{_s(cache.get('warm_cold_deploy_s'))} / {_s(cache.get('empty_cold_deploy_s'))} = "
                         f"{cache.get('warm_over_empty')}", "warm_over_empty"))
    met = [x["key"] for x in result["targets"] if x["status"] == "met"]
    missed = [x["key"] for x in result["targets"] if x["status"] == "missed"]
    not_run = [x["key"] for x in result["targets"] if x["status"] == "not run"]
    lines += ["", f"Met: {', '.join(met) or 'none'}. Missed: {', '.join(missed) or 'none'}."
              + (f" Not run: {', '.join(not_run)}." if not_run else "")]
    if result.get("error"):
        lines += ["", f"The run stopped early: `{result['error']}`."]
    if result["where_time_goes"]:
        lines += ["", "Where the time goes in each missed target (the run's own timings):", "", "```text",
                  *result["where_time_goes"], "```"]
    return "\n".join(lines)


def chart(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, c, n, v = (result.get(k) or {} for k in ("floor", "cold", "no_change", "verify"))
    dl, d, loc = (result.get(k) or {} for k in ("day_later", "drift_repair", "local"))
    limits = {x["key"]: x["limit"] for x in result.get("targets") or []}
    bars = [
        ("floor apt", f.get("install_s"), None),
        ("cold deploy", c.get("deploy_s"), None),
        ("no-change", n.get("deploy_s"), limits.get("no_change_s")),
        ("day later", dl.get("deploy_s"), limits.get("day_later_s")),
        ("local+rootless\nno-change", (loc.get("no_change") or {}).get("deploy_s"), limits.get("local_no_change_s")),
        ("verify", v.get("seconds"), limits.get("verify_s")),
        ("drift repair", d.get("total_s"), limits.get("drift_repair_s")),
    ]
    bars = [b for b in bars if b[1] is not None]
    scale = sorted((result.get("scale") or {}).items(), key=lambda kv: int(kv[0]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    ax = axes[0]
    xs = range(len(bars))
    ax.bar(xs, [b[1] for b in bars], color="#4c72b0")
    for x, (_, _, limit) in zip(xs, bars, strict=True):
        if limit is not None:  # each bar's own target as a short red tick
            ax.hlines(limit, x - 0.4, x + 0.4, colors="#c44e52", lw=2)
    if f.get("install_s") and limits.get("cold_over_floor"):
        ax.axhline(limits["cold_over_floor"] * f["install_s"], color="#55a868", ls="--", lw=1,
                   label=f"cold target {limits['cold_over_floor']}x floor")
    ax.plot([], [], color="#c44e52", lw=2, label="target")
    ax.set_xticks(list(xs), [b[0] for b in bars])
    ax.set_ylabel("seconds")
    ax.set_title(f"{result.get('lab')}: {result.get('nodes')} nodes")
    ax.legend(fontsize=7, loc="upper right")
    ax.tick_params(axis="x", labelsize=7)
    ax = axes[1]
    if scale:
        sx = [int(k) for k, _ in scale]
        ax.plot(sx, [s.get("floor_install_s") for _, s in scale], "^--", label="floor (bare apt)")
        ax.plot(sx, [s.get("cold_deploy_s") for _, s in scale], "o-", label="cold deploy")
        ax.plot(sx, [s.get("no_change_s") for _, s in scale], "s-", label="no-change")
        if limits.get("scale_12_over_floor"):
            ax.plot(sx, [limits["scale_12_over_floor"] * s["floor_install_s"] if s.get("floor_install_s") else None
                         for _, s in scale], ":", color="#c44e52",
                    label=f"target {limits['scale_12_over_floor']}x own floor")
        ax.set_xticks(sx)
        ax.legend(fontsize=7)
    ax.set_xlabel("nodes")
    ax.set_ylabel("seconds")
    ax.set_title("scale against its own floor")
    load = (result.get("load_average") or {}).get("start")
    fig.suptitle(f"swarmlab bench {result.get('date')} — {result.get('machine')}, load {load}", fontsize=9)
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
