"""The `swarmlab` command line."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import click

from swarmlab.cli import labkind, nextsteps, pipeline, preflight
from swarmlab.cli.nightly import DEFAULT_NODES, MAX_NODES, run_nightly
from swarmlab.containerlab import provider
from swarmlab.containerlab.cache import CacheError
from swarmlab.containerlab.docker_cli import DockerError
from swarmlab.containerlab.image import ImageError
from swarmlab.containerlab.vagrant_prep import PrepError
from swarmlab.control import reach
from swarmlab.model.distros import DISTROS
from swarmlab.model.shipped import example_spec
from swarmlab.model.spec import LabSpec, NodeSpec, SpecError, load_spec
from swarmlab.model.specfile import RULE, find_spec
from swarmlab.model.state import lab_state_dir

# exit codes (docs/cli.md): 0 done; 1 checks or a deploy failed, or some node is absent or does
# not answer; 2 bad spec, bad usage or another expected error; 3 no node of the lab answers
EXIT_FAILED, EXIT_ERROR, EXIT_DOWN = 1, 2, 3
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEPLOYED = "deployed"  # .swarmlab/<lab>/deployed: a deploy to these hosts succeeded once
EXPECTED = (SpecError, provider.ProviderError, DockerError, ImageError, pipeline.PipelineError, CacheError,
            PrepError)

CONTAINER_LAB_GRANTS = (
    "note: node containers run with every capability, no seccomp or AppArmor confinement and "
    "access to all host devices and the host cgroup tree: root in a node is root on this "
    "Docker host. Run only specs and workloads you trust."
)

spec_option = click.option(
    "--spec", "spec_path", type=click.Path(path_type=Path), default=None, metavar="FILE",
    help=f"Lab spec file. Without it: {RULE.removeprefix('--spec FILE, else ')}.",
)
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the result as one JSON object on stdout (messages go to stderr).")


def _load(spec_path: Path | None) -> tuple[LabSpec, Path]:
    """The spec by the one rule (swarmlab.model.specfile), named on stderr; none: an error naming the fix."""
    found = find_spec(spec_path)
    if found is None:
        example = example_spec()
        raise click.UsageError(
            "no lab spec: none given and no lab.yaml here (an installed swarmlab has no default "
            f"lab). Fix: pass --spec FILE (or set SWARMLAB_SPEC); to start from the example "
            f"container lab: cp {example} lab.yaml && swarmlab up"
        )
    click.echo(found.line(), err=True)
    spec = load_spec(found.path)
    for warning in spec.warnings():
        click.echo(f"warning: {warning}", err=True)
    return spec, found.path


def _args(spec_path: Path | None) -> str:
    """` --spec FILE` as the user gave it (for the fix lines), or nothing."""
    return f" --spec {shlex.quote(str(spec_path))}" if spec_path else ""


class LabError(click.ClickException):
    """An expected failure (bad spec, no engine, a failed phase): `error: ...` on stderr, exit 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


class NoSuchNode(LabError):
    """NODE is not a node of the spec."""

    def __init__(self, spec: LabSpec, name: str) -> None:
        super().__init__(f"no node {name!r} in the spec (nodes: {', '.join(n.name for n in spec.nodes)})")


class Unreachable(LabError):
    """A live command could not read the node."""


class LabDown(LabError):
    """No node of the lab (or the one node asked for) answers over SSH: exit 3."""

    exit_code = EXIT_DOWN


class NodesDown(LabError):
    """Some nodes answer, some do not, and the command needs them all: exit 1."""

    exit_code = EXIT_FAILED


def _unreachable_lines(spec: LabSpec, bad: list[reach.NodeReach], args: str) -> list[str]:
    lines = [f"  {r.name} ({r.address}): {r.error}" for r in bad]
    return [*lines, f"fix: {labkind.kind_of(spec).fix(spec, args)}"]


def _gate(spec: LabSpec, path: Path, args: str, names: set[str] | None = None,
          need_all: bool = False) -> list[reach.NodeReach]:
    """The quick reachability check: LabDown when no node asked for answers, NodesDown when
    some do not and `need_all`, else a warning per silent node; the answers."""
    from swarmlab.control.inventory import lab_groups

    managers, workers = lab_groups(path)
    answers = reach.check([e for e in managers + workers if names is None or e[0] in names])
    bad = [r for r in answers if not r.ok]
    if not bad:
        return answers
    lines = _unreachable_lines(spec, bad, args)
    if len(bad) == len(answers):
        who = (f"node {bad[0].name} of lab {spec.name} does not answer" if names and len(answers) == 1
               else f"lab {spec.name}: no node answers")
        raise LabDown("\n".join([f"{who} over SSH (is the lab up?)", *lines]))
    if need_all:
        raise NodesDown("\n".join([f"lab {spec.name}: {len(bad)} of {len(answers)} nodes do not "
                                   "answer over SSH; this command needs every node", *lines]))
    click.echo("\n".join([f"warning: {len(bad)} of {len(answers)} nodes do not answer over SSH",
                          *lines]), err=True)
    return answers


@contextlib.contextmanager
def _json_mode(as_json: bool) -> Iterator[None]:
    """With --json, every human line of the block goes to stderr; stdout keeps the JSON."""
    if not as_json:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _print_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


class LabGroup(click.Group):
    """Every command's expected errors (EXPECTED) end as a LabError instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EXPECTED as err:
            raise LabError(str(err)) from err


def _node(spec: LabSpec, name: str) -> NodeSpec:
    try:
        return spec.node(name)
    except KeyError:
        raise NoSuchNode(spec, name) from None


@click.group(cls=LabGroup, context_settings=CONTEXT)
@click.version_option(package_name="swarmlab", prog_name="swarmlab")
def main() -> None:
    """Provision and verify a Docker Swarm lab from one lab spec.

    Every command reads one lab spec: --spec FILE, else $SWARMLAB_SPEC, else ./lab.yaml in the
    current directory, else (in a source checkout) labs/local.yaml; it prints which on stderr.
    Exit codes: 0 done, 1 checks failed or some node is absent or silent, 2 bad spec or usage,
    3 no node of the lab answers.
    """


@main.command()
@click.argument("spec_file", required=False, type=click.Path(path_type=Path))
@spec_option
def validate(spec_file: Path | None, spec_path: Path | None) -> None:
    """Check a lab spec; touch no host (SPEC_FILE or --spec)."""
    if spec_file and spec_path and spec_file != spec_path:
        raise click.UsageError(f"two specs given ({spec_file} and --spec {spec_path}): give one")
    spec, path = _load(spec_file or spec_path)
    click.echo(
        f"{spec_file or spec_path or path}: ok — lab {spec.name}, {len(spec.managers)} manager(s), "
        f"{len(spec.workers)} worker(s) on {spec.network.subnet}"
    )


@main.command()
@spec_option
@click.option("--verify/--no-verify", default=True, help="Run the testinfra suite at the end (default on).")
@click.option("--cache/--no-cache", default=os.environ.get("SWARMLAB_APT_CACHE", "1") != "0",
              help="Send the nodes' apt through the shared package cache (default on).")
def up(spec_path: Path | None, verify: bool, cache: bool) -> None:
    """Container lab: nodes up, deploy, verify, report."""
    spec, path = _load(spec_path)
    click.echo(CONTAINER_LAB_GRANTS, err=True)
    provider.ensure_engine()
    preflight.check_same_name(spec, path)
    preflight.record_spec(spec, path)
    pipeline.nodes_up(spec, cache=cache)
    deploy_and_verify(spec, path, verify, report=True, args=_args(spec_path), then=lambda: click.echo(
        "\n".join(nextsteps.next_steps(spec, path, nextsteps.program()))))


@main.command("vagrant-prep")
@spec_option
@click.option("--env-only", is_flag=True, help="Only print the environment; build nothing.")
def vagrant_prep(spec_path: Path | None, env_only: bool) -> None:
    """Vagrant docker provider: image, network, key, exports.

    Use: eval "$(swarmlab vagrant-prep --spec S)" && vagrant up --provider=docker
    """
    from swarmlab.containerlab.vagrant_prep import export_lines, prepare, vagrant_env

    spec, path = _load(spec_path)
    env = vagrant_env(spec, path) if env_only else prepare(
        spec, path, log=lambda m: click.echo(m, err=True))
    click.echo("\n".join(export_lines(env)))
    if not env_only:
        click.echo("next: vagrant up --provider=docker && swarmlab deploy   "
                   "(after: vagrant destroy -f && swarmlab down)", err=True)


@main.command()
@spec_option
@click.option("--verify/--no-verify", default=True, help="Run the testinfra suite after the deploy (default on).")
@click.option("--dry", is_flag=True, help="Only show what the deploy would change (pyinfra --dry).")
@click.option("--yes", "-y", is_flag=True,
              help="Apply a first deploy to SSH hosts without asking (the plan is still shown).")
def deploy(spec_path: Path | None, verify: bool, dry: bool, yes: bool) -> None:
    """Any lab (VMs, own hosts): deploy, verify (pyinfra).

    A first deploy to SSH hosts (not a container or Vagrant lab) shows its plan (pyinfra --dry)
    and asks before it changes anything; every deploy refuses a firewall that would cut the SSH
    port it connects on (firewall.ssh_port).
    """
    spec, path = _load(spec_path)
    args = _args(spec_path)
    first = labkind.kind_of(spec).name == "SSH hosts" and not (lab_state_dir(spec.name) / DEPLOYED).exists()
    if dry or first:
        _guarded(spec, path, args)
        _plan(spec, path)
        if dry:
            return
        if not yes:
            if not sys.stdin.isatty():
                raise LabError(f"a first deploy to lab {spec.name}'s hosts: the plan above is what it "
                               f"changes. Fix: run `swarmlab deploy{args} --yes` to apply it")
            click.confirm("apply this deploy?", abort=True)
    deploy_and_verify(spec, path, verify, args=args)


def _guarded(spec: LabSpec, path: Path, args: str) -> None:
    """Every node answers, and on the port the firewall keeps open (reach.firewall_cut)."""
    answers = _gate(spec, path, args, need_all=True)
    cut = reach.firewall_cut(spec, path, answers)
    if cut:
        raise LabError(cut)


def _plan(spec: LabSpec, path: Path) -> None:
    """pyinfra --dry: the operations the deploy would run, per operation and host."""
    with pipeline.phase("deploy plan (pyinfra --dry, nothing changes)", click.echo) as info:
        result = pipeline.run_deploy(spec, path, extra=["--dry"])
        info["detail"] = f"{len(result.changed_ops)} operations would change something"
    for line in result.changed_ops:
        click.echo(f"    would run: {line}")
    if result.failed_hosts:
        raise pipeline.PipelineError(f"the dry run failed on {', '.join(result.failed_hosts)}; "
                                     f"its log: {result.log}\n{pipeline.tail(result.log, 20)}")


@main.command("verify")
@spec_option
@click.option("--check", default=None, metavar="EXPR",
              help="Only the checks whose name matches (pytest -k), e.g. 'forward or masquerade'.")
@json_option
@click.pass_context
def verify_cmd(ctx: click.Context, spec_path: Path | None, check: str | None, as_json: bool) -> None:
    """Run the testinfra checks against the lab's nodes."""
    spec, path = _load(spec_path)
    with _json_mode(as_json):
        _gate(spec, path, _args(spec_path), need_all=True)
        result = _verify(spec, path, check)
        click.echo(pipeline.summary_line(None, result, len(spec.nodes)))
    if as_json:
        _print_json({"lab": spec.name, "spec": str(path), "hosts": len(spec.nodes),
                     "passed": result.passed, "failed": result.failed, "skipped": result.skipped,
                     "seconds": round(result.seconds, 1), "failures": result.failures,
                     "skip_reasons": result.skip_reasons, "security": result.security,
                     "junit": str(result.report)})
    ctx.exit(EXIT_FAILED if result.failed else 0)


def deploy_and_verify(spec: LabSpec, path: Path, verify: bool, report: bool = False,
                      then: Callable[[], None] | None = None, args: str = "") -> None:
    """The firewall guard, deploy, verify, the summary line, the report page (`report`); then
    `then` (e.g. next steps); exit 1 on failures."""
    _guarded(spec, path, args)
    with pipeline.phase("deploy") as info:
        result = pipeline.run_deploy(spec, path, progress=click.echo)
        info["detail"] = f"changed={result.changed} failed={len(result.failed_hosts)} log={result.log}"
    if result.failed_hosts:
        click.echo(f"deploy failed on {', '.join(result.failed_hosts)}:", err=True)
        click.echo(pipeline.tail(result.log, 30), err=True)
    else:
        (lab_state_dir(spec.name) / DEPLOYED).write_text(f"{path}\n")
    if spec.docker.tls and not result.failed_hosts:
        from swarmlab.control.certs import usage_lines

        for text in usage_lines(spec):
            click.echo(f"  {text}")
    checked = None
    if verify and not result.failed_hosts:
        checked = _verify(spec, path)
    click.echo(pipeline.summary_line(result, checked, len(spec.nodes)))
    if report and not result.failed_hosts:
        _report(spec, path, must=False)  # then the next steps, which name the page again
    if then is not None:
        then()
    if result.failed_hosts or (checked and checked.failed):
        click.get_current_context().exit(EXIT_FAILED)


def _report(spec: LabSpec, path: Path, must: bool, unreachable: dict[str, str] | None = None) -> Any:
    """Collect the live facts and write the page; as the last step of `up` a failure only warns."""
    from swarmlab.report import build_report

    try:
        with pipeline.phase("report") as info:
            built = build_report(spec, path, unreachable=unreachable)
            info["detail"] = f"collected in {built.collect_seconds}s"
    except Exception as err:  # noqa: BLE001 - the lab is up and verified; the page is extra
        if must:
            raise pipeline.PipelineError(f"report: {reach.short_error(err)}") from err
        click.echo(f"warning: no report ({type(err).__name__}: {reach.short_error(err)})", err=True)
        return None
    for diff in built.differences:
        click.echo(f"  differs from the spec: {diff['text']}")
    click.echo(f"report: {built.html_path}  (facts: {built.json_path})")
    return built


@main.command()
@spec_option
@json_option
@click.pass_context
def report(ctx: click.Context, spec_path: Path | None, as_json: bool) -> None:
    """Collect the live facts; write report.json and report.html.

    Nodes that do not answer are named in the page and the command exits 1.
    """
    spec, path = _load(spec_path)
    with _json_mode(as_json):
        answers = _gate(spec, path, _args(spec_path))
        silent = {r.name: r.error or "" for r in answers if not r.ok}
        built = _report(spec, path, must=True, unreachable=silent)
    if as_json:
        _print_json({"lab": spec.name, "spec": str(path), "html": built.html_path,
                     "json": built.json_path, "collect_seconds": built.collect_seconds,
                     "differences": built.differences, "unreachable": silent})
    ctx.exit(EXIT_FAILED if silent else 0)


@main.command()
@spec_option
@click.argument("node")
@click.option("--table", type=click.Choice(["nat", "filter"]), default=None, help="Only this table.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Trace a published port: DNAT rule -> container -> filter rules from another lab node.")
def explain(spec_path: Path | None, node: str, table: str | None, port: int | None) -> None:
    """NODE's nat and filter rules in plain sentences (live)."""
    from swarmlab.report.collect import collect_lab
    from swarmlab.report.explain import explain_save, grouped
    from swarmlab.report.trace import trace_port

    spec, path = _load(spec_path)
    target = _node(spec, node)
    _gate(spec, path, _args(spec_path), names={target.name})
    try:
        facts = collect_lab(spec, path, only=target.name)["nodes"][target.name]
    except Exception as err:  # noqa: BLE001 - the connection broke after the check
        raise Unreachable(f"could not read {node}: {reach.short_error(err)}") from err
    if facts.get("error"):
        raise Unreachable(f"{node}: {facts['error']}")
    if port is not None:
        other = next((n for n in spec.nodes if n.name != target.name), target)
        for line in trace_port(facts, target.ip, other.ip, port, iface=spec.network.interface):
            click.echo(line)
        return
    tables = (table,) if table else ("nat", "filter")
    text = "\n".join(facts["iptables"][t] for t in tables)
    for group, items in grouped(explain_save(text, tables)).items():
        click.echo(f"== {group}")
        for item in items:
            click.echo(f"  {item.sentence}" if item.sentence else f"  [not explained] {item.raw}")


def _verify(spec: LabSpec, path: Path, check: str | None = None) -> pipeline.VerifyResult:
    with pipeline.phase("verify") as info:
        result = pipeline.run_verify(spec, path, check=check, progress=click.echo)
        info["detail"] = f"passed={result.passed} failed={result.failed} skipped={result.skipped}"
    for reason in result.skip_reasons:
        click.echo(f"  skipped: {reason}")
    for failure in result.failures:
        click.echo(f"  failed: {failure}", err=True)
        for line in result.repairs.get(failure.split(": ", 1)[0], []):
            click.echo(f"    {line}", err=True)
    if result.security:
        lines = pipeline.security_report(result, spec.security.profile == "hardened")
        findings = result.report.parent / "security-report.txt"
        findings.write_text("\n".join(lines + ["", "all findings:", *result.security_findings]) + "\n")
        for text in lines[:len(result.security)]:
            click.echo(f"  {text}")
        click.echo(f"  security findings: {findings}")
    if result.failed:
        click.echo(f"  failures: see {result.report.parent / 'verify.log'}", err=True)
    return result


@main.command()
@click.option("--distro", type=click.Choice(sorted(DISTROS)), required=True, help="Node distro.")
@click.option("--source", type=click.Choice(["official", "distro"]), required=True,
              help="Docker from the official repository or the distro's packages.")
@click.option("--junit", type=click.Path(path_type=Path), default=Path("reports/junit.xml"),
              show_default=True, help="Where to write the cell's JUnit report.")
@click.option("--nodes", type=click.IntRange(1, MAX_NODES), default=DEFAULT_NODES, show_default=True,
              envvar="SWARMLAB_NIGHTLY_NODES", help="Lab size: one manager, the rest workers.")
@click.pass_context
def nightly(ctx: click.Context, distro: str, source: str, junit: Path, nodes: int) -> None:
    """CI matrix cell: a container lab up, verified, down."""
    ctx.exit(run_nightly(distro, source, junit, nodes))


@main.command()
@spec_option
def down(spec_path: Path | None) -> None:
    """Remove a container lab's containers, network, volumes."""
    spec, _ = _load(spec_path)
    provider.ensure_engine()
    gone = provider.remove_lab(spec.name)
    click.echo(
        f"lab {spec.name}: removed {gone['containers']} containers, {gone['networks']} networks, "
        f"{gone['volumes']} volumes"
    )


@main.command("cache-clear")
@click.option("--force", is_flag=True, help="Remove it even while labs use it.")
def cache_clear(force: bool) -> None:
    """Remove the shared package cache and its volume."""
    from swarmlab.containerlab.cache import cache_users, remove_cache

    provider.ensure_engine()
    users = cache_users()
    remove_cache(force=force)
    if users:
        click.echo(f"warning: lab(s) {', '.join(users)} used the cache: their apt fails until "
                   "`swarmlab up` runs for them again", err=True)
    click.echo("package cache removed")


@main.command()
@spec_option
@json_option
@click.pass_context
def status(ctx: click.Context, spec_path: Path | None, as_json: bool) -> None:
    """Each node's machine and SSH state (any lab).

    Exit 0 when every node answers, 1 when some node is absent or silent, 3 when none answers.
    """
    from swarmlab.control.inventory import lab_groups

    spec, path = _load(spec_path)
    kind = labkind.kind_of(spec)
    machines = kind.machines(spec)
    managers, workers = lab_groups(path)
    probed = [e for e in managers + workers if machines.get(e[0], "-") not in labkind.NOT_RUNNING]
    answers = {r.name: r for r in reach.check(probed)}
    rows = []
    for node in spec.nodes:
        answer = answers.get(node.name)
        error = (answer.error if answer else f"not checked: the machine is {machines.get(node.name)}")
        rows.append({"name": node.name, "role": node.role, "distro": node.distro, "ip": node.ip,
                     "machine": machines.get(node.name, "-"), "ssh": "ok" if error is None else "no",
                     "error": error})
    answering = sum(row["ssh"] == "ok" for row in rows)
    code = 0 if answering == len(rows) else EXIT_DOWN if answering == 0 else EXIT_FAILED
    fix = kind.fix(spec, _args(spec_path)) if code else None
    if as_json:
        _print_json({"lab": spec.name, "spec": str(path), "kind": kind.name, "nodes": rows,
                     "answering": answering, "fix": fix, "exit": code})
        ctx.exit(code)
    click.echo(f"lab {spec.name} · {kind.name} · {answering}/{len(rows)} nodes answer over SSH · "
               f"spec {path}")
    header = ("NODE", "ROLE", "DISTRO", "ADDRESS", "MACHINE", "SSH")
    table = [header] + [(r["name"], r["role"], r["distro"], r["ip"], r["machine"], r["ssh"]) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(f"{str(v):<{w}}" for v, w in zip(row, widths, strict=True)).rstrip())
    for r in rows:
        if r["error"]:
            click.echo(f"  {r['name']} ({r['ip']}): {r['error']}", err=True)
    if fix:
        click.echo(f"fix: {fix}", err=True)
    ctx.exit(code)


@main.command(context_settings={"ignore_unknown_options": True})
@spec_option
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(spec_path: Path | None, node: str, command: tuple[str, ...]) -> None:
    """A shell (or COMMAND) on NODE, any lab.

    Logs in as the lab's SSH user, with the lab's SSH settings."""
    from swarmlab.control.inventory import lab_groups
    from swarmlab.control.sshconfig import LAB_CONFIG, write_ssh_config

    spec, path = _load(spec_path)
    target = _node(spec, node)
    _gate(spec, path, _args(spec_path), names={target.name})
    managers, workers = lab_groups(path)
    config = write_ssh_config(managers + workers, lab_state_dir(spec.name) / LAB_CONFIG)
    argv = ["ssh", "-F", str(config), target.name, *command]
    os.execvp(argv[0], argv)


@main.command()
def schema() -> None:
    """Print the lab spec's JSON Schema.

    For editors: yaml-language-server reads it (see docs/spec.md)."""
    from swarmlab.model.schema import schema_text

    click.echo(schema_text(), nl=False)


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script (click's) for SHELL.

    bash: eval "$(swarmlab completion bash)"   (e.g. in ~/.bashrc)
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    click.echo(cls(main, {}, "swarmlab", "_SWARMLAB_COMPLETE").source())


if __name__ == "__main__":
    main()
