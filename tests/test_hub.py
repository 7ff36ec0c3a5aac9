"""Models on the Hub (issue 23 §3): ``hf://ORG/NAME`` through huggingface_hub's cache, the model card, ``--push-to-hub``.

Nothing is downloaded: every test runs offline (``HF_HUB_OFFLINE=1``) against a cache folder the test
fills in huggingface_hub's own layout (``models--ORG--NAME/{blobs,refs,snapshots}``), so the library's
real resolution code (``hf_hub_download``) finds the files. The upload itself cannot run offline:
``HfApi.create_repo``/``create_commit`` are replaced by recorders, and everything up to them is real.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support import ROOT, TINY, assert_clean_failure

from ganforge.cli import cli
from test_api import SHRINK

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

REPO = "someone/tiny-gan"
COMMIT = hashlib.sha1(b"ganforge test commit").hexdigest()  # a commit hash is 40 hex digits


@pytest.fixture(scope="module")
def run_with_evaluation(tmp_path_factory) -> Path:
    """A 2-step tiny run whose metrics.jsonl records one evaluation (written by ganforge's own recorder)."""
    from ganforge.evaluation import Evaluation, record_evaluation

    run = tmp_path_factory.mktemp("hub") / "run"
    args = ["train", str(TINY), "--out", str(run), "--steps", "2", "--device", "cpu", "--seed", "0"]
    for override in SHRINK:
        args += ["--set", override]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    record_evaluation(run, Evaluation(values={"fid": 123.4567, "kid": 0.0123},
                                      protocol={"protocol": "standard", "n": 64, "reference": "procedural"}),
                      step=2, checkpoint=run / "checkpoints" / "step-000000002.pt")
    return run


@pytest.fixture(scope="module")
def export(run_with_evaluation, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "tiny.safetensors"
    result = CliRunner().invoke(cli, ["export", str(run_with_evaluation), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    return out


def fill_cache(cache: Path, repo_id: str, files: dict[str, Path], *, commit: str = COMMIT,
               refs: tuple[str, ...] = ("main",)) -> Path:
    """Put ``files`` (repo path → local file) into ``cache`` exactly as ``hf_hub_download`` leaves them."""
    from huggingface_hub import constants

    folder = cache / constants.REPO_ID_SEPARATOR.join(["models", *repo_id.split("/")])
    for name, source in files.items():
        data = source.read_bytes()
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()  # an LFS file's blob is named by its sha256
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = folder / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (folder / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (folder / "refs" / ref).write_text(commit)
    return folder


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache, offline, for this process (huggingface_hub reads both when it is imported) and children."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


# -- the model card ------------------------------------------------------------------------------
def card_parts(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_export_writes_a_model_card_beside_the_file(export, run_with_evaluation):
    from ganforge.engine.restore import restore

    card = export.with_name("README.md")
    front, body = card_parts(card.read_text(encoding="utf-8"))
    assert front["library_name"] == "ganforge" and "gan" in front["tags"] and "tiny" in front["tags"]
    assert "**Training steps**: 2 " in body and "EMA generator" in body
    # the latest evaluation of metrics.jsonl, with its protocol
    assert "| fid | 123.4567 |" in body and "| kid | 0.0123 |" in body and "at step 2 of `step-000000002.pt`" in body
    assert "- protocol: standard" in body and "- reference: procedural" in body
    assert 'ganforge.load("hf://ORG/NAME")' in body
    blueprint = yaml.safe_load(body.split("```yaml\n", 1)[1].split("\n```", 1)[0])
    assert blueprint == restore(run_with_evaluation).record.blueprint
    assert not list(export.parent.glob("*.tmp"))  # written through a temporary file


def test_the_card_says_when_no_evaluation_was_recorded(tmp_path, export):
    """An export of an export: no run folder, no metrics.jsonl; the card says so instead of inventing one."""
    out = tmp_path / "again.safetensors"
    result = CliRunner().invoke(cli, ["export", str(export), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "No evaluation is recorded" in (tmp_path / "README.md").read_text(encoding="utf-8")


def test_a_hand_written_readme_is_kept_and_the_card_goes_to_stem_md(tmp_path, export):
    readme = tmp_path / "README.md"
    readme.write_text("# my notes\n")
    out = tmp_path / "tiny.safetensors"
    result = CliRunner().invoke(cli, ["export", str(export), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert readme.read_text() == "# my notes\n"
    assert card_parts((tmp_path / "tiny.md").read_text(encoding="utf-8"))[0]["library_name"] == "ganforge"
    assert f"wrote {tmp_path / 'tiny.md'}: its model card (README.md here was not written by ganforge)" in result.output
    # ganforge's own README.md is rewritten by the next export
    readme.unlink()
    for _ in range(2):
        result = CliRunner().invoke(cli, ["export", str(export), "--out", str(out)])
        assert result.exit_code == 0, result.stderr
        assert f"wrote {readme}: its model card\n" in result.output


# -- hf:// targets, offline ---------------------------------------------------------------------
def test_load_sample_and_evaluate_resolve_hf_targets_through_the_cache(export, tmp_path):
    """A fresh process with HF_HUB_OFFLINE=1 and HF_HUB_CACHE: huggingface_hub reads both at import, as users set them."""
    from huggingface_hub import scan_cache_dir

    cache = tmp_path / "hf-cache"
    fill_cache(cache, REPO, {"model.safetensors": export, "README.md": export.with_name("README.md"),
                             "other/second.safetensors": export}, refs=("main", "v1"))  # the cache keeps a ref under the name it was asked by
    assert [repo.repo_id for repo in scan_cache_dir(cache).repos] == [REPO]  # the library reads our layout
    code = ("import ganforge\n"
            f"for target in ['hf://{REPO}', 'hf://{REPO}@v1', 'hf://{REPO}@{COMMIT}', 'hf://{REPO}/other/second.safetensors']:\n"
            "    g = ganforge.load(target, device='cpu')\n"
            "    print(g.step, g.uses_ema, g.source)\n"
            "print(tuple(g.generate(2, seed=0).shape))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    *loads, shape = result.stdout.splitlines()
    snapshot = cache / f"models--someone--tiny-gan/snapshots/{COMMIT}"
    assert loads == [f"2 True {snapshot / 'model.safetensors'}"] * 3 + [f"2 True {snapshot / 'other/second.safetensors'}"]
    assert shape == "(2, 3, 16, 16)"
    # the CLI takes the same target; the default grid goes to ./samples, never into the cache
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run([sys.executable, "-m", "ganforge", "sample", f"hf://{REPO}", "--n", "4", "--device", "cpu"],
                            capture_output=True, text=True, cwd=work, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (work / "samples" / "someone--tiny-gan.png").is_file() and not (snapshot / "samples").exists()


def test_sample_and_evaluate_accept_hf_targets_in_process(export, offline_cache, tmp_path, cli):
    fill_cache(offline_cache, REPO, {"model.safetensors": export})
    out = tmp_path / "grid.png"
    result = cli("sample", f"hf://{REPO}", "--n", "4", "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert out.is_file()


MISSING = [  # target → what the line names
    (f"hf://nobody/nothing", ("hf://nobody/nothing", "model.safetensors of nobody/nothing")),
    (f"hf://{REPO}/absent.safetensors", (f"hf://{REPO}/absent.safetensors", "absent.safetensors")),
    (f"hf://{REPO}@v9", (f"hf://{REPO}@v9", f"{REPO}@v9")),
]


@pytest.mark.parametrize("command", ["sample", "evaluate", "export"])
@pytest.mark.parametrize("target, names", MISSING, ids=["no-repo", "no-file", "no-revision"])
def test_a_target_missing_from_the_offline_cache_is_one_line(command, target, names, export, offline_cache, tmp_path,
                                                             cli, stand_in):
    fill_cache(offline_cache, REPO, {"model.safetensors": export})
    extra = {"sample": ["--device", "cpu"],
             "evaluate": ["--device", "cpu", "--n", "2", "--metrics", "fid", "--inception", str(stand_in)],
             "export": ["--out", str(tmp_path / "x.safetensors")]}[command]
    result = cli(command, target, *extra)
    line = assert_clean_failure(result, mentions=names)
    assert "is not in the local Hugging Face cache" in line and "HF_HUB_OFFLINE is set" in line
    assert str(offline_cache) in line


def test_a_missing_target_through_the_api_is_a_ganforge_error(offline_cache):
    import ganforge
    from ganforge.errors import GanforgeError

    with pytest.raises(GanforgeError, match="hf://nobody/nothing: model.safetensors of nobody/nothing is not in the "
                                            "local Hugging Face cache .* and HF_HUB_OFFLINE is set"):
        ganforge.load("hf://nobody/nothing", device="cpu")


@pytest.mark.parametrize("target, words", [
    ("hf://justone", ("hf://justone", "not a Hub target")),
    ("hf://a/b/weights.pt", ("hf://a/b/weights.pt", "must be a .safetensors export")),
    ("hf://a/b/../../etc.safetensors", ("hf://a/b/../../etc.safetensors", "must be a .safetensors export")),
], ids=["no-name", "not-safetensors", "dot-dot"])
def test_a_malformed_hf_target_is_one_line(target, words, offline_cache, cli):
    assert_clean_failure(cli("sample", target, "--device", "cpu"), mentions=words)


# -- --push-to-hub (recorded, not sent) -------------------------------------------------------
@pytest.fixture
def recorded_hub(monkeypatch):
    """``HfApi.create_repo`` and ``create_commit`` replaced by recorders: the calls, and the uploaded bytes."""
    from huggingface_hub import HfApi

    calls: list[tuple] = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))

    def create_commit(self, repo_id, *, operations, commit_message, **kwargs):
        files = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations}
        calls.append(("create_commit", repo_id, files, commit_message, kwargs))

        class Info:
            commit_url = f"https://huggingface.co/{repo_id}/commit/{COMMIT}"
        return Info()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return calls


def test_push_to_hub_uploads_the_export_and_its_card_in_one_commit(export, tmp_path, recorded_hub):
    out = tmp_path / "pushed.safetensors"
    result = CliRunner().invoke(cli, ["export", str(export), "--out", str(out), "--push-to-hub", REPO])
    assert result.exit_code == 0, result.stderr
    (created, name, options), (commit, repo, files, message, commit_options) = recorded_hub
    assert (created, name, options) == ("create_repo", REPO, {"repo_type": "model", "exist_ok": True})
    assert (commit, repo, commit_options) == ("create_commit", REPO, {"repo_type": "model"})
    assert files == {"model.safetensors": out.read_bytes(), "README.md": (tmp_path / "README.md").read_bytes()}
    assert message == "ganforge export: tiny, step 2"
    assert f'ganforge.load("hf://{REPO}")'.encode() in files["README.md"]  # the card names the real repo
    assert f"https://huggingface.co/{REPO}/commit/{COMMIT}" in result.output


def test_a_pushed_export_loads_back_through_hf(export, tmp_path, recorded_hub, offline_cache):
    """What push uploads, laid out as a download would cache it, is what ``hf://REPO`` loads."""
    import ganforge

    out = tmp_path / "pushed.safetensors"
    assert CliRunner().invoke(cli, ["export", str(export), "--out", str(out), "--push-to-hub", REPO]).exit_code == 0
    uploaded = tmp_path / "uploaded"
    uploaded.mkdir()
    for name, data in recorded_hub[1][2].items():
        (uploaded / name).write_bytes(data)
    fill_cache(offline_cache, REPO, {name: uploaded / name for name in ("model.safetensors", "README.md")})
    assert ganforge.load(f"hf://{REPO}", device="cpu").step == 2


def test_a_failed_upload_is_one_line_and_keeps_the_local_files(export, tmp_path, monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import LocalTokenNotFoundError

    def no_token(self, repo_id, **kwargs):
        raise LocalTokenNotFoundError("Token is required (`token=True`), but no token found.")

    monkeypatch.setattr(HfApi, "create_repo", no_token)
    out = tmp_path / "tiny.safetensors"
    line = assert_clean_failure(CliRunner().invoke(cli, ["export", str(export), "--out", str(out), "--push-to-hub", REPO]),
                                mentions=(f"--push-to-hub {REPO}", "upload failed", "no token found", str(out)))
    assert "README.md" in line and out.is_file() and (tmp_path / "README.md").is_file()


@pytest.mark.parametrize("repo", ["justone", "a/b/c", "a/-b"])
def test_a_bad_repo_id_is_refused_before_exporting(repo, export, tmp_path, recorded_hub):
    out = tmp_path / "tiny.safetensors"
    assert_clean_failure(CliRunner().invoke(cli, ["export", str(export), "--out", str(out), "--push-to-hub", repo]),
                         mentions=(repo,))
    assert not out.exists() and recorded_hub == []


def test_help_and_import_do_not_import_huggingface_hub():
    code = ("import sys, ganforge\n"
            "from ganforge.cli import cli\n"
            "try:\n    cli(['export', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('huggingface_hub' in sys.modules, 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["False", "False"]
    assert "--push-to-hub" in result.stdout


def test_a_readme_folder_is_left_alone(tmp_path, export):
    """README.md that is not a file (a folder) is not ganforge's card either: the card goes to <stem>.md."""
    (tmp_path / "README.md").mkdir()
    out = tmp_path / "tiny.safetensors"
    result = CliRunner().invoke(cli, ["export", str(export), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "README.md").is_dir() and (tmp_path / "tiny.md").is_file()
