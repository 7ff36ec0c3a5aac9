"""GPU correctness: the fast path computes what the plain one does. Skipped without CUDA.

Run them wherever a GPU is: `python -m pytest -q -m cuda`. Each prints its measured figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from support import BLUEPRINTS, ROOT, TINY

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _trainer(blueprint: Path, overrides: list[str], out: Path, seed: int = 0):
    from ganforge.engine.distributed import place_process
    from ganforge.engine.build import build_trainer

    return build_trainer(str(blueprint), overrides=overrides, placement=place_process("cuda"), out=out, data="real",
                         seed=seed)


def test_spectral_norm_sigma_stays_fp32_under_bf16_autocast():
    from ganforge.components.layers.spectral_norm import SNConv2d, refresh_spectral_norm

    torch.manual_seed(0)
    layer = SNConv2d(in_channels=256, channels=256).cuda()
    refresh_spectral_norm(layer)  # u, v exact: what is left is the precision of uᵀWv
    layer.eval()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        weight = layer.conv.weight
    sigma = torch.linalg.matrix_norm(weight.double().reshape(256, -1), 2).item()
    print(f"bf16 autocast: |σ(W/σ̂) − 1| = {abs(sigma - 1):.2e}")
    assert abs(sigma - 1) < 1e-4  # bf16 matvecs leave about 1e-3 (measured 9.8e-4 on an H100)


def test_fused_adam_agrees_with_the_plain_loop():
    torch.manual_seed(0)
    params = [torch.randn(64, 32, device="cuda"), torch.randn(17, device="cuda")]
    copies = {name: [p.clone().requires_grad_(True) for p in params] for name in ("fused", "plain")}
    optimizers = {"fused": torch.optim.Adam(copies["fused"], lr=1e-3, betas=(0.0, 0.9), fused=True),
                  "plain": torch.optim.Adam(copies["plain"], lr=1e-3, betas=(0.0, 0.9), foreach=False)}
    for _ in range(20):
        grads = [torch.randn_like(p) for p in params]
        for name, optimizer in optimizers.items():
            for p, g in zip(copies[name], grads):
                p.grad = g.clone()
            optimizer.step()
    worst = max((a - b).abs().max().item() for a, b in zip(copies["fused"], copies["plain"]))
    print(f"fused vs plain Adam after 20 steps: max |Δ| = {worst:.2e}")
    assert worst < 1e-6


def test_compile_agrees_with_eager_at_the_start_and_stays_finite(tmp_path):
    common = ["train.precision=fp32", "train.tf32=false", "train.batch_size=16", "data.size=256"]
    losses = {}
    for name, extra in (("eager", []), ("compiled", ["train.compile=true"])):
        trainer = _trainer(TINY, [*common, *extra], tmp_path / name)
        losses[name] = torch.stack([torch.stack(trainer.train_step()) for _ in range(20)]).cpu()
    apart = (losses["eager"] - losses["compiled"]).abs().amax(dim=1)
    print("compiled vs eager, max |Δloss| per step:", " ".join(f"{d:.1e}" for d in apart.tolist()))
    # Fused kernels sum in another order, and GAN training amplifies rounding step by step: on the
    # CPU, scaling one weight of tiny by (1 + 1e-7) leaves the losses within 2.2e-7 for six steps
    # and 0.18 apart by step 20. So the first steps are held tight and the rest only to be finite.
    assert apart[:3].max() < 1e-4
    assert torch.isfinite(losses["compiled"]).all()


def test_fast_path_tracks_fp32_on_the_cifar_blueprint(tmp_path):
    """200 steps of sagan_cifar10 (procedural images): bf16 + channels-last + TF32 against fp32.

    GAN trajectories are chaotic, so step-by-step agreement is only expected at the start; later
    the fast path's mean losses must lie as close to fp32's as fp32 with another seed does.
    """
    data = ["data={type: procedural, resolution: 32, channels: 3, num_classes: 10, size: 4096}",
            "train.num_workers=0"]
    fp32 = ["train.precision=fp32", "train.tf32=false", "train.channels_last=false"]
    fast = ["train.precision=bf16", "train.tf32=true", "train.channels_last=true"]
    curves = {}
    for name, extra, seed in (("fp32", fp32, 0), ("fp32-seed1", fp32, 1), ("fast", fast, 0)):
        trainer = _trainer(BLUEPRINTS / "sagan_cifar10.yaml", [*data, *extra], tmp_path / name, seed=seed)
        curves[name] = torch.stack([torch.stack(trainer.train_step()) for _ in range(200)]).cpu()
    first = (curves["fast"][0] - curves["fp32"][0]).abs().max().item()
    early = (curves["fast"][:20] - curves["fp32"][:20]).abs().max().item()
    late = (curves["fast"][100:].mean(0) - curves["fp32"][100:].mean(0)).abs().max().item()
    seeds = (curves["fp32-seed1"][100:].mean(0) - curves["fp32"][100:].mean(0)).abs().max().item()
    print(f"fast vs fp32: step 1 max |Δloss| = {first:.2e}, first 20 steps {early:.3f}; steps 100-200 mean "
          f"losses differ by {late:.3f} (fp32 seed 0 vs seed 1: {seeds:.3f})")
    # Measured on an H100 (torch 2.11): step 1 2.05e-2 (bf16 keeps ~3 significant digits through
    # ~20 layers, on losses near 2); steps 100-200 0.129 against 0.331 between fp32 seeds.
    assert first < 0.05
    assert late < max(0.15, 3 * seeds)


def test_resume_restores_cuda_random_state_exactly(tmp_path):
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    fast = ["--device", "cuda", "--set", "train.batch_size=8", "--set", "data.size=64",
            "--set", "train.checkpoint_every=2", "--set", "train.keep_checkpoints=10",
            "--set", "train.deterministic=true", "--set", "train.precision=fp32"]

    def train(out: Path, *extra: str) -> None:
        done = subprocess.run([sys.executable, "-m", "ganforge", "train", str(TINY), "--out", str(out), *fast, *extra],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
        assert done.returncode == 0, done.stderr

    train(tmp_path / "straight", "--steps", "6")
    train(tmp_path / "split", "--steps", "4")
    train(tmp_path / "split", "--steps", "6", "--resume")
    a, b = (torch.load(run / "checkpoints" / "step-000000006.pt", weights_only=True)
            for run in (tmp_path / "straight", tmp_path / "split"))
    assert a["rng"] == b["rng"]  # CUDA, torch, numpy, python and latent-noise streams, bit for bit
    worst = max((a[n][k].float() - b[n][k].float()).abs().max().item()
                for n in ("generator", "discriminator") for k in a[n])
    print(f"resumed vs uninterrupted on CUDA (deterministic cuDNN): max |Δweight| = {worst:.2e}")
    assert worst < 1e-5


def test_benchmark_runs_end_to_end_on_cuda(cli, tmp_path):
    out = tmp_path / "bench.json"
    result = cli("benchmark", TINY, "--device", "cuda", "--steps", "2", "--repeats", "2", "--warmup", "1",
                 "--baseline", "--variant", "train.precision=bf16", "--json", out)
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["device_name"] and report["cuda"] and report["matmul_peak_tflops_bf16"] > 10
    for row in report["rows"]:
        assert row["peak_memory_bytes"] > 0 and row["flops_per_image"] > 0 and 0 < row["peak_fraction"] < 1
    attention = cli("benchmark", "--component", "self_attention", "--resolutions", "16,32", "--channels", "64",
                    "--batch", "2", "--device", "cuda", "--repeats", "2")
    assert attention.exit_code == 0 and "32×32" in attention.stdout


def test_class_grouped_minibatch_stddev_under_bf16_matches_a_float64_loop():
    from ganforge.components.layers.minibatch_stddev import MinibatchStdDev

    torch.manual_seed(0)
    x = torch.randn(24, 8, 4, 4, dtype=torch.float64)
    labels = torch.randint(0, 4, (24,))
    layer = MinibatchStdDev(in_channels=8, num_classes=4, by_class=True, num_channels=2).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = layer(x.cuda().to(torch.bfloat16), labels.cuda())
    for i in range(24):  # the spread over the images of i's class, per half of the channels (ProGAN §3)
        group = x[labels == labels[i]]
        for half in range(2):
            part = group[:, 4 * half:4 * half + 4]
            expected = part.var(dim=0, unbiased=False).add(1e-8).sqrt().mean().item()
            assert got[i, 8 + half].float().cpu() == pytest.approx(torch.full((4, 4), expected), rel=2e-2)
    assert torch.equal(got[:, :8].cpu(), x.to(torch.bfloat16))


def test_standing_statistics_on_cuda_match_the_cpu(tmp_path):
    import copy

    from ganforge.sampling.standing_stats import seeded_standing_statistics
    from ganforge.engine.build import build_trainer
    from ganforge.engine.distributed import place_process

    trainer = build_trainer(str(TINY), overrides=[], placement=place_process("cpu"), out=tmp_path, data="real")
    nets = [trainer.update.generator, copy.deepcopy(trainer.update.generator).cuda()]
    settings = dict(passes=3, latent_dim=trainer.update.latent_dim, num_classes=trainer.update.num_classes, sample_seed=0,
                    batch_size=16)
    seeded_standing_statistics(nets[0], device="cpu", **settings)
    seeded_standing_statistics(nets[1], device="cuda", **settings)
    cpu, gpu = nets[0].state_dict(), nets[1].state_dict()
    stats = [k for k in cpu if k.endswith(("running_mean", "running_var"))]
    assert stats
    worst = max((cpu[k] - gpu[k].cpu()).abs().max().item() for k in stats)
    print(f"standing statistics, CUDA vs CPU: max |Δ| = {worst:.2e} over {len(stats)} buffers")
    assert worst < 1e-3


def test_tiny_trains_in_bf16_on_cuda_and_evaluates_with_standing_statistics(cli, tmp_path):
    run = tmp_path / "run"
    trained = cli("train", TINY, "--device", "cuda", "--out", run, "--steps", "20",
                  "--set", "train.precision=bf16", "--set", "train.checkpoint_every=20")
    assert trained.exit_code == 0, trained.stderr
    scored = cli("evaluate", run, "--device", "cuda", "--metrics", "procedural_pr", "--n", "200",
                 "--standing-stats", "4")
    assert scored.exit_code == 0, scored.stderr
    print(scored.stdout)
    assert "procedural_precision" in scored.stdout and "standing statistics of 4" in scored.stdout
