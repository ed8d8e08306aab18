"""The learning commands: `swarmlab trace` and `swarmlab exercise ...` (registered in cli.py).

Registered on the `swarmlab` command by swarmlab/cli/app.py.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import click

from swarmlab.learn import exercises as ex
from swarmlab.learn.live_trace import KINDS

spec_option = click.option("--spec", "spec_path", type=click.Path(path_type=Path), default=None,
                           help="Lab spec (default in a checkout: labs/local.yaml).")


def _interrupt_on_term(*_: object) -> None:
    raise KeyboardInterrupt  # a TERM runs the same `finally` (tracing removed) as Ctrl-C


@click.command()
@spec_option
@click.argument("kind", type=click.Choice(KINDS))
@click.option("--from", "src", default=None, help="Node the packet starts on (default: the second node).")
@click.option("--to", "dst", default=None, help="Node it goes to (default: the first node, or the second).")
@click.option("--linger", type=click.FloatRange(0, 600), default=1.0, show_default=True,
              help="Seconds to keep tracing after the packet (send your own meanwhile).")
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
def trace(spec_path: Path | None, kind: str, src: str | None, dst: str | None, linger: float,
          as_json: bool) -> None:
    """One real packet of KIND, rule by rule.

    Sends one real packet of KIND and shows each netfilter rule it hit on every node it crossed.

    port: a TCP connect to a port a container publishes on another node; overlay: a ping between
    two tasks on the spec's overlay (VXLAN); masquerade: a container reaches another node's SSH port.
    """
    from swarmlab.cli.commands import LabError, _load, _node
    from swarmlab.learn.live_trace import TraceError, Tracer, lines
    from swarmlab.report.collect import testinfra_hosts
    from swarmlab.report.lasttrace import save

    spec, path = _load(spec_path)
    for name in (src, dst):
        if name:
            _node(spec, name)
    hosts, config = testinfra_hosts(spec, path)
    old = signal.signal(signal.SIGTERM, _interrupt_on_term)
    # Ctrl-C interrupts even when started with SIGINT ignored (a background job of a script)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        tracer = Tracer(spec, hosts, log=lambda m: click.echo(m, err=True))
        result = tracer.run(tracer.plan(kind, src, dst), linger=linger)
    except TraceError as err:
        raise LabError(f"trace: {err}") from err
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)
        config.unlink(missing_ok=True)
    saved = save(result)
    click.echo(json.dumps(result, indent=1) if as_json else "\n".join(lines(result)))
    if not as_json:
        from swarmlab.cli.commands import _report

        click.echo(f"\nsaved: {saved}")
        _report(spec, path, must=False)  # the page draws the path on the topology


@click.group()
def exercise() -> None:
    """Break-and-fix exercises on the live lab.

    list, start NAME, hint, check, reset."""


@exercise.command("list")
def list_cmd() -> None:
    """The exercises and their symptoms."""
    for e in ex.EXERCISES.values():
        click.echo(f"{e.name:<18} {e.symptom}")


@exercise.command()
@spec_option
@click.argument("name", type=click.Choice(sorted(ex.EXERCISES)))
def start(spec_path: Path | None, name: str) -> None:
    """Break the lab for exercise NAME (it says only the symptom)."""
    from swarmlab.cli.commands import LabError, _load

    spec, path = _load(spec_path)
    running = ex.current(spec)
    if running:
        raise LabError(f"exercise {running['name']} is running: `swarmlab exercise reset` first")
    e = ex.EXERCISES[name]
    node = e.node_name(spec)
    _root_shell(spec, path, node, e.fill(spec, e.shell))
    ex.started(spec, name)
    click.echo(f"exercise {name} started. Symptom: {e.symptom}.")
    click.echo("Find and fix it on the nodes (swarmlab ssh NODE, sudo -i). "
               "`swarmlab exercise hint` helps, `swarmlab exercise check` says when it is solved.")


def _root_shell(spec, path: Path, node: str, shell: str) -> None:
    """A root shell on a node over the suite's SSH connection (sudo)."""
    from swarmlab.cli.commands import LabError
    from swarmlab.report.collect import testinfra_hosts

    hosts, config = testinfra_hosts(spec, path)
    try:
        hosts[node].check_output("sh -c %s", shell)
    except Exception as err:  # noqa: BLE001 - an unreachable node or a failed command: say which
        raise LabError(f"{node}: {type(err).__name__}: {str(err).strip()[-400:]}") from err
    finally:
        config.unlink(missing_ok=True)


@exercise.command()
@spec_option
def hint(spec_path: Path | None) -> None:
    """The next hint: first the layer, then a command to look with, then the exact place."""
    from swarmlab.cli.commands import LabError, _load

    spec, _ = _load(spec_path)
    got = ex.next_hint(spec)
    if got is None:
        raise LabError("no exercise is running: `swarmlab exercise start NAME` (see `swarmlab exercise list`)")
    level, text = got
    e = ex.EXERCISES[ex.current(spec)["name"]]
    click.echo(f"hint {level}/{len(e.hints)}: {text.replace('NODE', e.node_name(spec))}")


@exercise.command()
@spec_option
@click.option("--show", is_flag=True, help="Also name the failing checks and their messages (a big hint).")
@click.pass_context
def check(ctx: click.Context, spec_path: Path | None, show: bool) -> None:
    """Run the checks that catch this exercise's break: solved (exit 0) or not (exit 1)."""
    from swarmlab.cli import pipeline
    from swarmlab.cli.commands import LabError, _load

    spec, path = _load(spec_path)
    running = ex.current(spec)
    if running is None:
        raise LabError("no exercise is running: `swarmlab exercise start NAME`")
    result = pipeline.run_verify(spec, path, check=ex.EXERCISES[running["name"]].checks)
    if result.failed or not result.passed:
        click.echo(f"exercise {running['name']}: not solved yet ({result.failed} of "
                   f"{result.failed + result.passed} check(s) fail)")
        for failure in result.failures if show else []:
            click.echo(f"  failed: {failure}")
        ctx.exit(1)
    click.echo(f"exercise {running['name']}: solved ({result.passed} check(s) pass). "
               "`swarmlab exercise reset` puts the lab back as the deploy wants it.")


SETTLE_TRIES = 3
SETTLE_SECONDS = 10


@exercise.command()
@spec_option
@click.pass_context
def reset(ctx: click.Context, spec_path: Path | None) -> None:
    """Repair the lab: put back what Docker owns, re-run the deploy, verify the whole lab."""
    import time

    from swarmlab.cli import pipeline
    from swarmlab.cli.commands import _load, _verify

    spec, path = _load(spec_path)
    running = ex.current(spec)
    e = ex.EXERCISES.get(running["name"]) if running else None
    if e and e.restore:
        _root_shell(spec, path, e.node_name(spec), e.fill(spec, e.restore))
    ex.finished(spec)
    with pipeline.phase("deploy") as info:
        result = pipeline.run_deploy(spec, path, progress=click.echo)
        info["detail"] = f"changed={result.changed} failed={len(result.failed_hosts)} log={result.log}"
    checked = None
    if result.failed_hosts:
        click.echo(f"deploy failed on {', '.join(result.failed_hosts)}:", err=True)
        click.echo(pipeline.tail(result.log, 30), err=True)
    else:
        # a restarted daemon rejoins its overlays asynchronously: a failed check gets a few more runs
        for attempt in range(SETTLE_TRIES):
            checked = _verify(spec, path)
            if not checked.failed or attempt == SETTLE_TRIES - 1:
                break
            click.echo(f"  the swarm may still be settling after the repair: verifying again in {SETTLE_SECONDS} s")
            time.sleep(SETTLE_SECONDS)
    click.echo(pipeline.summary_line(result, checked, len(spec.nodes)))
    if result.failed_hosts or (checked and checked.failed):
        ctx.exit(1)
