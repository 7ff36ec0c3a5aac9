"""The ``ganforge`` command. Imports nothing heavy at start-up: torch and plugins load per command."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Iterator

import click

from .errors import GanforgeError

DEBUG_HELP = "Show Python tracebacks instead of one-line errors."


@contextlib.contextmanager
def user_errors(debug: bool) -> Iterator[None]:
    """Bad input ends the command with one line on stderr and exit code 2."""
    try:
        yield
    except GanforgeError as err:
        if debug:
            raise
        click.echo(f"error: {err}", err=True)
        cause = err.__cause__
        if cause is not None and not isinstance(cause, GanforgeError) and str(cause) not in str(err):
            click.echo(f"  caused by {type(cause).__name__}: {cause}", err=True)
        sys.exit(getattr(err, "exit_code", 2))


def debug_option(func):  # type: ignore[no-untyped-def]
    return click.option("--debug", is_flag=True, default=False, help=DEBUG_HELP)(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ganforge")
def cli() -> None:
    """Compose, inspect and train GANs from YAML blueprints."""


@cli.command("inspect")
@click.argument("blueprint", type=click.Path(dir_okay=True, path_type=str))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a blueprint key, e.g. --set train.batch_size=64 (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@debug_option
def inspect_command(blueprint: str, overrides: tuple[str, ...], fmt: str, debug: bool) -> None:
    """Print the assembled generator and discriminator without allocating weights."""
    with user_errors(debug):
        from .assembly import assemble
        from .blueprint.validation import load_blueprint
        from .inspection import describe, format_text
        from .registry import default_registry
        from .training.planning import plan_training

        loaded = load_blueprint(blueprint, overrides)
        registry = default_registry()
        assembly = assemble(loaded, registry)
        plan = plan_training(loaded, registry)
        report = describe(assembly, plan)
    click.echo(json.dumps(report, indent=2) if fmt == "json" else format_text(report))


@cli.command("train")
@click.argument("blueprint", type=click.Path(dir_okay=True, path_type=str))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a blueprint key, e.g. --set data.root=/data/train (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Run folder for checkpoints, samples and logs [default: runs/<blueprint name>].")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Train to this step (overrides train.steps).")
@click.option("--resume", is_flag=True, help="Continue from the newest valid checkpoint in --out.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=None, help="Random seed (overrides train.seed).")
@debug_option
def train_command(blueprint: str, overrides: tuple[str, ...], out: str | None, steps: int | None, resume: bool,
                  device: str, seed: int | None, debug: bool) -> None:
    """Train the GAN a blueprint describes; torchrun it for several GPUs."""
    with user_errors(debug):
        from .training.run import train

        train(blueprint, overrides=list(overrides), out=out, steps=steps, resume=resume, device=device,
              seed=seed)


@cli.command("benchmark")
@click.argument("blueprint", type=click.Path(dir_okay=True, path_type=str))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a blueprint key (repeatable).")
@click.option("--variant", "variants", multiple=True, metavar="KEY=VALUE",
              help="Measure this override as a separate row, side by side (repeatable).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True, help="Steps per timed repeat.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True)
@debug_option
def benchmark_command(blueprint: str, overrides: tuple[str, ...], variants: tuple[str, ...], device: str,
                      steps: int, repeats: int, warmup: int, debug: bool) -> None:
    """Median training throughput (images/s) of a blueprint, on synthetic data of its shape."""
    with user_errors(debug):
        from .engine.benchmark import format_table, measure_all

        results = measure_all(blueprint, overrides=list(overrides), variants=list(variants or ("",)),
                              device=device, steps=steps, repeats=repeats, warmup=warmup)
    click.echo(format_table(results, steps=steps, repeats=repeats, warmup=warmup))


@cli.command("components")
@click.argument("words", nargs=-1, metavar="[KIND] [PATTERN] | show NAME")
@debug_option
def components_command(words: tuple[str, ...], debug: bool) -> None:
    """List registered components (optionally of one KIND, names matching a glob PATTERN),
    or `components show NAME` for one component's settings and documentation."""
    with user_errors(debug):
        from .registry import KINDS, default_registry

        registry = default_registry()
        if words and words[0] == "show":
            if len(words) != 2:
                raise GanforgeError("usage: ganforge components show NAME (or KIND.NAME)")
            click.echo(_show(registry, words[1]))
            return
        if len(words) > 2:
            raise GanforgeError("usage: ganforge components [KIND] [PATTERN]")
        kind = words[0] if words and words[0] in KINDS else None
        rest = words[1:] if kind else words
        if kind is None and len(words) == 2:
            raise GanforgeError(f"unknown component kind {words[0]!r}; kinds are: {', '.join(KINDS)}")
        pattern = rest[0] if rest else "*"
        rows = registry.list(kind, pattern)
        width = max((len(c.name) for c in rows), default=4)
        for c in rows:
            click.echo(f"{c.kind:<12} {c.name:<{width}}  {c.origin:<28} {c.summary}")
        if not rows:
            click.echo("no components match", err=True)
        for broken in registry.broken_plugins:
            click.echo(f"broken plugin {broken.distribution} ({broken.entry_point}): {broken.error}", err=True)


def _show(registry, name: str) -> str:  # type: ignore[no-untyped-def]
    from .registry import KINDS

    kind, _, bare = name.rpartition(".")
    component = registry.get(kind, bare) if kind else registry.find(name, KINDS)
    lines = [f"{component.kind} {component.name}", f"  origin: {component.origin} ({component.qualname})"]
    if component.context_params:
        lines.append(f"  inferred from the stack: {', '.join(sorted(component.context_params))}")
    lines.append("  settings:")
    params = component.parameters()
    for p in params:
        default = "required" if p.required else f"default {p.default!r}"
        lines.append(f"    {p.name}: {p.annotation} ({default})")
    if not params:
        lines.append("    (none)")
    if component.doc:
        lines.append("")
        lines += ["  " + line for line in component.doc.splitlines()]
    return "\n".join(lines)


def main() -> None:
    cli(prog_name="ganforge")


if __name__ == "__main__":
    main()
