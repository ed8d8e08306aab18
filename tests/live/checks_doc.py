"""docs/verify-coverage.md, made from the data: the spec-field coverage (swarmlab/verify/coverage.py),
the drift table of the recorded runs (docs/drift-results.json) and the checks no round breaks.

    .venv/bin/python -m tests.live.checks_doc     # rewrite docs/verify-coverage.md
"""

from __future__ import annotations

from pathlib import Path

from swarmlab.verify import coverage

from .drift import DRIFTS, RESULTS, drift_key, load_results, markdown_table, not_broken_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "verify-coverage.md"


def _counts(results: dict) -> str:
    """One line per recorded lab: breaks, caught, repaired by the deploy / the printed command."""
    lines = []
    for lab, rows in sorted(results.items()):
        mine = [rows[drift_key(d)] for d in DRIFTS if drift_key(d) in rows]
        if not mine:
            continue
        when = max(r["when"] for r in mine)
        lines.append(
            f"- {lab} (last run {when}): {len(mine)} of {len(DRIFTS)} breaks recorded, "
            f"{sum(r['caught'] for r in mine)} caught, "
            f"{sum(r['repaired'] == 'deploy' for r in mine)} repaired by a deploy re-run, "
            f"{sum(r['repaired'] == 'printed command' for r in mine)} by the printed command")
    return "\n".join(lines) or "- no drift run recorded yet"


def render(results: dict | None = None) -> str:
    results = load_results() if results is None else results
    fields = coverage.leaf_fields()
    checked = sum(1 for f in fields if coverage.CHECKS.get(f))
    return f"""# What `swarmlab verify` checks, and how each check is proven

## Every spec field, checked on the live host

Each leaf field of the lab spec (`swarmlab/model/spec.py`; `[]` is every item of a list) maps to the
checks in `swarmlab/verify` that read it back from the nodes, or to the reason no check can.
{checked} of {len(fields)} fields are checked; {len(fields) - checked} cannot be. A unit test
(`tests/unit/test_checks_coverage.py`) walks the spec model and fails on a field with neither,
so a new field cannot land unchecked. A field the spec leaves out (an empty list, no value) is
Docker's or the distro's to choose: its check skips and says so, or compares only what is set.

{coverage.markdown_table()}

## Drift: each check broken on a live node, then repaired

`tests/live/drift.py` (the Debian 13 lab `tests/live/test_trio_lab.py` and the Debian 14 lab
`tests/live/test_forky_lab.py`) breaks the state each check reads, in rounds of independent
breaks. `swarmlab verify` must fail and name the check. Then the break is repaired one of two
ways, and verify must pass:

- **a deploy re-run** repairs what the deploy owns (its files, packages, ufw rules, the swarm's
  membership, labels, overlays and options);
- **the printed command**: state the deploy does not own (Docker's own NAT/filter chains, jumps,
  MASQUERADE rules and bridge addresses; a user's iptables rule or systemd drop-in that conflicts
  with the lab) is left alone by the deploy, and `swarmlab verify` prints under the failed check
  the exact command that repairs it, as `repair on NODE (as root): COMMAND`. The suite runs the
  command as printed. What the commands touch: `systemctl restart docker.service` (Docker
  re-creates its chains, rules and bridge addresses; the node's containers restart, an autolocked
  manager comes back locked and `swarmlab deploy` unlocks it); `iptables -D` of exactly the rules
  in INPUT/OUTPUT that drop a swarm port (2377/tcp, 7946/tcp+udp, the data-path port, 2376/tcp
  with TLS) for the lab subnet or accept one from outside it; `rm` of the docker.service drop-ins
  that give dockerd a `tcp://` host without TLS, then a daemon reload and a docker restart. A rule
  or drop-in that does not conflict with the lab is never named.

The table is written from what the runs recorded (`docs/drift-results.json`, updated by each
drift round), not typed: "not run" means no recorded run has made that break yet.

{_counts(results)}

{markdown_table(results)}

### Checks no drift round breaks

{not_broken_table()}

Each drift round rewrites this page; by hand: `.venv/bin/python -m tests.live.checks_doc`
(results: `{RESULTS.relative_to(DOC.parents[1])}`).
"""


def main() -> None:
    DOC.write_text(render())
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
