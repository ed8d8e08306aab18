"""The `swarmlab` command line."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import click

from swarmlab.cli import nextsteps, pipeline, preflight
from swarmlab.cli.nightly import DEFAULT_NODES, MAX_NODES, run_nightly
from swarmlab.containerlab import provider
from swarmlab.containerlab.cache import CacheError
from swarmlab.containerlab.docker_cli import DockerError
from swarmlab.containerlab.image import ImageError
from swarmlab.containerlab.vagrant_prep import PrepError
from swarmlab.model.distros import DISTROS
from swarmlab.model.shipped import default_spec, example_spec
from swarmlab.model.spec import LabSpec, NodeSpec, SpecError, load_spec

CONTAINER_LAB = "labs/local.yaml"  # the default spec in a checkout; installed, --spec names the lab
EXPECTED = (SpecError, provider.ProviderError, DockerError, ImageError, pipeline.PipelineError, CacheError,
            PrepError)

CONTAINER_LAB_GRANTS = (
    "note: node containers run with every capability, no seccomp or AppArmor confinement and "
    "access to all host devices and the host cgroup tree: root in a node is root on this "
    "Docker host. Run only specs and workloads you trust."
)

spec_option = click.option(
    "--spec", "spec_path", type=click.Path(path_type=Path), default=None,
    help="Lab spec (default in a checkout: labs/local.yaml for the container lab; installed: required).",
)


def _load(spec_path: Path | None, default: str = CONTAINER_LAB) -> tuple[LabSpec, Path]:
    """The spec: --spec, SWARMLAB_SPEC, the checkout's `default`; installed, an error naming the fix."""
    given = spec_path or os.environ.get("SWARMLAB_SPEC") or default_spec(default)
    if not given:
        example = example_spec()
        raise click.UsageError(
            "no lab spec: an installed swarmlab has no default lab. Fix: pass --spec FILE (or set "
            f"SWARMLAB_SPEC); to start from the example container lab: cp {example} lab.yaml && "
            "swarmlab up --spec lab.yaml"
        )
    path = Path(given).resolve()
    spec = load_spec(path)
    for warning in spec.warnings():
        click.echo(f"warning: {warning}", err=True)
    return spec, path


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


@click.group(cls=LabGroup)
@click.version_option(package_name="swarmlab")
def main() -> None:
    """Provision and verify a Docker Swarm lab from one lab spec."""


@main.command()
@click.argument("spec_path", type=click.Path(path_type=Path))
def validate(spec_path: Path) -> None:
    """Check a lab spec; touch no host."""
    spec, _ = _load(spec_path)
    click.echo(
        f"{spec_path}: ok — lab {spec.name}, {len(spec.managers)} manager(s), "
        f"{len(spec.workers)} worker(s) on {spec.network.subnet}"
    )


@main.command()
@spec_option
@click.option("--verify/--no-verify", default=True, help="Run the testinfra suite at the end.")
@click.option("--cache/--no-cache", default=os.environ.get("SWARMLAB_APT_CACHE", "1") != "0",
              help="Send the nodes' apt through the shared package cache (default on).")
def up(spec_path: Path | None, verify: bool, cache: bool) -> None:
    """Container lab: nodes up -> deploy -> verify -> summary."""
    spec, path = _load(spec_path)
    click.echo(CONTAINER_LAB_GRANTS, err=True)
    provider.ensure_engine()
    preflight.check_same_name(spec, path)
    preflight.record_spec(spec, path)
    pipeline.nodes_up(spec, cache=cache)
    deploy_and_verify(spec, path, verify, report=True, then=lambda: click.echo(
        "\n".join(nextsteps.next_steps(spec, path, nextsteps.program()))))


@main.command("vagrant-prep")
@spec_option
@click.option("--env-only", is_flag=True, help="Only print the environment; build nothing.")
def vagrant_prep(spec_path: Path | None, env_only: bool) -> None:
    """Vagrant docker provider: node image, lab network, lab key; prints the exports.

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
@click.option("--verify/--no-verify", default=True)
def deploy(spec_path: Path | None, verify: bool) -> None:
    """Any lab (VMs, servers): pyinfra deploy -> verify -> summary, via inventories/lab.py."""
    spec, path = _load(spec_path, "lab.yaml")
    deploy_and_verify(spec, path, verify)


@main.command("verify")
@spec_option
@click.option("--check", default=None, metavar="EXPR",
              help="Only the checks whose name matches (pytest -k), e.g. 'forward or masquerade'.")
@click.pass_context
def verify_cmd(ctx: click.Context, spec_path: Path | None, check: str | None) -> None:
    """Run the testinfra suite against the spec's hosts."""
    spec, path = _load(spec_path)
    result = _verify(spec, path, check)
    click.echo(pipeline.summary_line(None, result, len(spec.nodes)))
    ctx.exit(1 if result.failed else 0)


def deploy_and_verify(spec: LabSpec, path: Path, verify: bool, report: bool = False,
                      then: Callable[[], None] | None = None) -> None:
    """Deploy, verify, the summary line, the report page (`report`); then `then` (e.g.
    next steps); exit 1 on failures."""
    with pipeline.phase("deploy") as info:
        result = pipeline.run_deploy(spec, path, progress=click.echo)
        info["detail"] = f"changed={result.changed} failed={len(result.failed_hosts)} log={result.log}"
    if result.failed_hosts:
        click.echo(f"deploy failed on {', '.join(result.failed_hosts)}:", err=True)
        click.echo(pipeline.tail(result.log, 30), err=True)
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
        click.get_current_context().exit(1)


def _report(spec: LabSpec, path: Path, must: bool) -> None:
    """Collect the live facts and write the page; as the last step of `up` a failure only warns."""
    from swarmlab.report import build_report

    try:
        with pipeline.phase("report") as info:
            built = build_report(spec, path)
            info["detail"] = f"collected in {built.collect_seconds}s"
    except Exception as err:  # noqa: BLE001 - the lab is up and verified; the page is extra
        if must:
            raise pipeline.PipelineError(f"report: {type(err).__name__}: {err}") from err
        click.echo(f"warning: no report ({type(err).__name__}: {err})", err=True)
        return
    for diff in built.differences:
        click.echo(f"  differs from the spec: {diff['text']}")
    click.echo(f"report: {built.html_path}  (facts: {built.json_path})")


@main.command()
@spec_option
def report(spec_path: Path | None) -> None:
    """Collect the lab's live facts and write .state/<lab>/report.json and report.html."""
    spec, path = _load(spec_path)
    _report(spec, path, must=True)


@main.command()
@spec_option
@click.argument("node")
@click.option("--table", type=click.Choice(["nat", "filter"]), default=None, help="Only this table.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Trace a published port: DNAT rule -> container -> filter rules from another lab node.")
def explain(spec_path: Path | None, node: str, table: str | None, port: int | None) -> None:
    """Explain NODE's nat and filter rules in plain sentences (live, over SSH)."""
    from swarmlab.report.collect import collect_lab
    from swarmlab.report.explain import explain_save, grouped
    from swarmlab.report.trace import trace_port

    spec, path = _load(spec_path)
    target = _node(spec, node)
    try:
        facts = collect_lab(spec, path, only=target.name)["nodes"][target.name]
    except Exception as err:  # noqa: BLE001 - no inventory or SSH config for this lab yet
        raise Unreachable(f"could not reach {node}: {type(err).__name__}: {err}") from err
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
        lines = pipeline.security_report(result)
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
@click.option("--source", type=click.Choice(["official", "distro"]), required=True)
@click.option("--junit", type=click.Path(path_type=Path), default=Path("reports/junit.xml"))
@click.option("--nodes", type=click.IntRange(1, MAX_NODES), default=DEFAULT_NODES, show_default=True,
              envvar="SWARMLAB_NIGHTLY_NODES", help="Lab size: one manager, the rest workers.")
@click.pass_context
def nightly(ctx: click.Context, distro: str, source: str, junit: Path, nodes: int) -> None:
    """CI matrix cell: a container lab of DISTRO/SOURCE, deploy, verify, report, down."""
    ctx.exit(run_nightly(distro, source, junit, nodes))


@main.command()
@spec_option
def down(spec_path: Path | None) -> None:
    """Remove the lab's containers, network and volumes (this lab only)."""
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
    """Remove the shared package cache container and its volume (not while labs use it)."""
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
def status(spec_path: Path | None) -> None:
    """Show the lab's node containers."""
    spec, _ = _load(spec_path)
    containers = {c["Config"]["Labels"].get(provider.NODE_LABEL): c
                  for c in provider.lab_containers(spec.name)}
    for node in spec.nodes:
        c = containers.get(node.name)
        state = c["State"]["Status"] if c else "absent"
        click.echo(f"{node.name:<12} {node.role:<8} {node.distro:<13} {node.ip:<15} {state}")


@main.command(context_settings={"ignore_unknown_options": True})
@spec_option
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(spec_path: Path | None, node: str, command: tuple[str, ...]) -> None:
    """Open a shell (or run COMMAND) on a container-lab node as the lab user."""
    spec, _ = _load(spec_path)
    argv = provider.ssh_command(spec, _node(spec, node)) + list(command)
    os.execvp(argv[0], argv)


@main.command()
def schema() -> None:
    """Print the lab spec's JSON Schema (for editors: yaml-language-server)."""
    from swarmlab.model.schema import schema_text

    click.echo(schema_text(), nl=False)


if __name__ == "__main__":
    main()
