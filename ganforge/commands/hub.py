"""Sharing an export: its model card (``README.md`` beside the ``.safetensors``) and ``--push-to-hub``.

The card is what the Hugging Face Hub shows for a repo: YAML front matter (``library_name: ganforge``,
tags), what the generator is, the training steps, the latest evaluation recorded in the run's
``metrics.jsonl`` with its protocol, how to load it, and the resolved blueprint as YAML. It is
``README.md`` in the export's folder unless a README.md not written by ganforge is already there
(then ``<stem>.md``, so a hand-written README is never overwritten). ``push_to_hub`` uploads the
export as ``model.safetensors`` (the name ``hf://ORG/NAME`` loads) and the card as ``README.md``, in one
commit. ``huggingface_hub`` is imported only by ``push_to_hub``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.hub_cache import DEFAULT_FILE, PREFIX
from ..errors import GanforgeError

if TYPE_CHECKING:
    from ..engine.restore import RestoredRun

__all__ = ["CARD_MARK", "card_path", "latest_evaluation", "model_card", "push_to_hub", "write_model_card"]

CARD_MARK = "<!-- written by `ganforge export`: it rewrites this file on the next export here -->"
_PLACEHOLDER = "ORG/NAME"
_MARK_WINDOW = 4096  # the mark sits right after the front matter, within the first few hundred bytes


def card_path(export: Path) -> Path:
    """``README.md`` beside ``export`` when it is absent or ganforge's own card; else ``<stem>.md``."""
    readme = export.with_name("README.md")
    if not readme.exists():
        return readme
    try:
        with open(readme, encoding="utf-8", errors="replace") as handle:
            head = handle.read(_MARK_WINDOW)
    except OSError:
        head = ""
    return readme if readme.is_file() and CARD_MARK in head else export.with_suffix(".md")


def latest_evaluation(run_dir: Path) -> dict[str, Any] | None:
    """The last ``evaluation`` event of ``run_dir/metrics.jsonl`` (training's or ``ganforge evaluate``'s), or None."""
    from ..engine.run_dir import RunDir
    from .plots import read_log

    log = RunDir(Path(run_dir)).metrics
    if not log.is_file():
        return None
    try:
        records = read_log(log)
    except GanforgeError:  # an empty or damaged log: the card says no evaluation was recorded
        return None
    evaluations = [record for record in records if record.get("event") == "evaluation"]
    return evaluations[-1] if evaluations else None


def model_card(run: RestoredRun, export: Path, *, repo_id: str | None = None) -> str:
    """The model card text for ``export``, written from ``run`` (``repo_id`` fills in the load lines)."""
    import yaml

    bp = run.loaded.blueprint
    name = bp.name or export.stem
    repo = repo_id or _PLACEHOLDER
    conditional = bp.data.num_classes > 0
    tags = ["gan", "ganforge", "image-generation", "unconditional-image-generation" if not conditional
            else "class-conditional", name]
    front: dict[str, Any] = {"library_name": "ganforge", "tags": list(dict.fromkeys(tags))}
    if not conditional:  # the Hub's task for it; a class-conditional generator has none of its own
        front["pipeline_tag"] = "unconditional-image-generation"
    blueprint = json.loads(json.dumps(run.record.blueprint, default=str))  # plain YAML types only
    kind = "EMA generator" if run.uses_ema else "raw (non-EMA) generator"
    classes = f"{bp.data.num_classes} classes" if conditional else "unconditional"
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", CARD_MARK, "",
             f"# {name}", ""]
    if bp.description:
        lines += [bp.description, ""]
    lines += [f"A GAN generator trained with [ganforge](https://pypi.org/project/ganforge/) from the `{name}` "
              "blueprint below; the file holds only the generator's weights and its resolved blueprint "
              "(safetensors: loading it runs no code).", "",
              f"- **Generator**: {kind}, {classes}, {bp.data.channels}×{bp.data.resolution}×{bp.data.resolution} "
              f"images from a {bp.generator.latent_dim}-dimensional latent",
              f"- **Training steps**: {run.step:,} (checkpoint `{run.checkpoint.name}`)",
              f"- **File**: `{DEFAULT_FILE}` in the repo (exported as `{export.name}`)", "",
              "## Evaluation", ""]
    lines += _evaluation_lines(latest_evaluation(run.run_dir))
    sample = "--class 0 " if conditional else ""
    lines += ["", "## How to load", "", "```python", "import ganforge", "",
              f'g = ganforge.load("{PREFIX}{repo}")    # downloads {DEFAULT_FILE} into the Hugging Face cache',
              "images = g.generate(16, seed=0)        # (16, C, H, W) float32 in [-1, 1]", "```", "",
              "```bash", f"ganforge sample {PREFIX}{repo} {sample}--out samples.png",
              f"ganforge evaluate {PREFIX}{repo} --reference REFERENCE --n 50000", "```", ""]
    if repo_id is None:
        lines += [f"Upload `{export.name}` as `{DEFAULT_FILE}` with this card as `README.md` "
                  f"(`ganforge export RUN --out {export.name} --push-to-hub {_PLACEHOLDER}` does both), then "
                  f"replace `{_PLACEHOLDER}` above with the repo's id.", ""]
    lines += ["## Blueprint", "", "The resolved blueprint (every setting, nothing inherited) the generator is "
              "rebuilt from:", "", "```yaml", yaml.safe_dump(blueprint, sort_keys=False).rstrip(), "```", ""]
    return "\n".join(lines)


def _evaluation_lines(record: dict[str, Any] | None) -> list[str]:
    if record is None:
        return ["No evaluation is recorded in the run's `metrics.jsonl` (run `ganforge evaluate RUN` before "
                "exporting to include one)."]
    values = {key: value for key, value in record.items()
              if key not in ("event", "step", "checkpoint", "protocol") and isinstance(value, (int, float))
              and not isinstance(value, bool)}
    where = f" of `{Path(str(record['checkpoint'])).name}`" if record.get("checkpoint") else ""
    lines = [f"The latest evaluation in the run's `metrics.jsonl`, at step {record.get('step')}{where}:", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value:.4f} |" for name, value in values.items()]
    protocol = record.get("protocol")
    if isinstance(protocol, dict) and protocol:
        lines += ["", "Protocol:", ""] + [f"- {key}: {value}" for key, value in protocol.items()]
    elif protocol:
        lines += ["", f"Protocol: {protocol}"]
    return lines


def write_model_card(run: RestoredRun, export: Path, *, repo_id: str | None = None) -> Path:
    """Write ``model_card`` atomically at ``card_path(export)``; returns the path written."""
    from ..engine.durable import replacing

    path = card_path(export)
    text = model_card(run, export, repo_id=repo_id).encode("utf-8")
    with replacing(path, what="model card") as temporary:
        temporary.write_bytes(text)
    return path


def check_repo_id(repo_id: str) -> str:
    """``ORG/NAME`` as the Hub accepts it (an ``hf://`` prefix is dropped), or one GanforgeError line."""
    from ..engine.hub_cache import parse_hub_target

    bare = repo_id.removeprefix(PREFIX)
    hub = parse_hub_target(PREFIX + bare) if bare.count("/") == 1 and "@" not in bare else None
    if hub is None or hub.repo_id != bare:
        raise GanforgeError(f"--push-to-hub {repo_id}: expected a repo id ORG/NAME (letters, digits, '-', '_', '.')")
    return bare


def push_to_hub(repo_id: str, *, export: Path, card: Path, message: str) -> str:
    """Create model repo ``repo_id`` if needed and upload ``export`` and ``card`` in one commit; the commit URL.

    One commit (``create_commit``, what ``upload_file`` does per file) so the repo never has the
    weights without their card. Failures (no login, no network, no permission) are one GanforgeError line.
    """
    try:
        from huggingface_hub import CommitOperationAdd, HfApi
        from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled
    except ImportError:
        raise GanforgeError("--push-to-hub needs huggingface_hub (pip install huggingface_hub)") from None
    api = HfApi(library_name="ganforge")
    operations = [CommitOperationAdd(path_in_repo=DEFAULT_FILE, path_or_fileobj=str(export)),
                  CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card))]
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        commit = api.create_commit(repo_id, operations=operations, commit_message=message, repo_type="model")
    except (HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled, OSError, ValueError) as err:
        summary = " ".join(str(err).split())[:240]
        raise GanforgeError(f"--push-to-hub {repo_id}: upload failed ({type(err).__name__}: {summary}); "
                            f"{export} and {card} are written locally") from None
    return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/{repo_id}")
