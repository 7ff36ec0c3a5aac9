"""Run by torchrun in test_training.py: train a few steps on 2 CPU processes, save each rank's weights.

With ``cli`` first (test_ddp_faults.py): ``ganforge ARGS...`` as this rank's own command, with the fault
named by ``$DDP_FAULT`` put into rank ``$DDP_FAULT_RANK`` (default 1) only, so that ranks disagree.
"""

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def train_and_save(blueprint: str, out: Path) -> None:
    from ganforge.assembly import assemble
    from ganforge.blueprint.validation import load_blueprint
    from ganforge.engine.build import build_dataset
    from ganforge.engine.distributed import leave, place_process
    from ganforge.engine.planning import plan_training
    from ganforge.engine.trainer import Trainer, TrainOptions
    from ganforge.registry import default_registry

    overrides = ["train.batch_size=8", "data.size=64", "train.log_every=1", "train.checkpoint_every=3",
                 "train.sample_every=1000"]
    loaded = load_blueprint(blueprint, overrides)
    registry = default_registry()
    placement = place_process("cpu")
    trainer = Trainer(assembly=assemble(loaded, registry), plan=plan_training(loaded, registry), registry=registry,
                      dataset=build_dataset(loaded, registry), options=TrainOptions(out=out / "run", steps=3, seed=0,
                                                                                    progress=False),
                      placement=placement, report=lambda m: None)
    first_batch = trainer.update.stream.next()[0]
    trainer.update.stream.restore({"epoch": 0, "offset": 0})
    trainer.run()
    gathered = [torch.zeros_like(first_batch) for _ in range(placement.world_size)]
    dist.all_gather(gathered, first_batch)
    params = {f"G.{k}": v.detach().clone() for k, v in trainer.update.generator.named_parameters()}
    params.update({f"D.{k}": v.detach().clone() for k, v in trainer.update.discriminator.named_parameters()})
    torch.save({"params": params, "step": trainer.update.step,
                "same_data": bool(torch.equal(gathered[0], gathered[1]))}, out / f"rank{placement.rank}.pt")
    leave(placement)


# -- faults for one rank (test_ddp_faults.py) ----------------------------------------------------------
def hide_newest_checkpoint() -> None:
    """This rank cannot read the newest checkpoint (as if its copy of the run folder were stale or damaged)."""
    import ganforge.engine.checkpoints as checkpoints

    original = checkpoints.load_checkpoint

    def load(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(path) == checkpoints.list_checkpoints(Path(path).parent)[-1]:
            raise ValueError("hidden from this rank by the test")
        return original(path, *args, **kwargs)

    checkpoints.load_checkpoint = load


def skip_images() -> None:
    """Every batch this rank reads counts one unreadable image (the other ranks' data is fine)."""
    from ganforge.engine.data_stream import DataStream

    original = DataStream.next

    def next_batch(self):  # type: ignore[no-untyped-def]
        batch = original(self)
        self.skipped += 1
        return batch

    DataStream.next = next_batch


def diverge_at_step_2() -> None:
    """This rank's D loss is NaN at step 2 (only the reported loss: the others' stay finite)."""
    from ganforge.engine.step import GANUpdate

    original = GANUpdate.train_step

    def train_step(self):  # type: ignore[no-untyped-def]
        d_loss, g_loss = original(self)
        return (d_loss * float("nan"), g_loss) if self.step == 2 else (d_loss, g_loss)

    GANUpdate.train_step = train_step


def raise_d_loss() -> None:
    """This rank reports its D loss 100 higher (the gradients are untouched): the log must show the mean."""
    from ganforge.engine.step import GANUpdate

    original = GANUpdate.train_step

    def train_step(self):  # type: ignore[no-untyped-def]
        d_loss, g_loss = original(self)
        return d_loss + 100.0, g_loss

    GANUpdate.train_step = train_step


def refuse_checkpoints() -> None:
    """Writing a checkpoint fails here (a full disk where only this rank writes)."""
    import ganforge.engine.trainer as trainer
    from ganforge.errors import GanforgeError

    def write_checkpoint(folder, record, *, keep):  # type: ignore[no-untyped-def]
        raise GanforgeError(f"cannot write checkpoint {folder}/step-{record.step:09d}.pt: No space left on device")

    trainer.write_checkpoint = write_checkpoint


def crash_once_at_step_3() -> None:
    """This process dies at step 3 the first time (``$DDP_MARKER`` not there yet), as a lost node would."""
    from ganforge.engine.step import GANUpdate

    original = GANUpdate.train_step
    marker = Path(os.environ["DDP_MARKER"])

    def train_step(self):  # type: ignore[no-untyped-def]
        if self.step == 2 and not marker.exists():
            marker.write_text("crashed once")
            os._exit(1)
        return original(self)

    GANUpdate.train_step = train_step


def crash_at_step_2() -> None:
    """An exception no vote knows of (a bug) on this rank alone at step 2."""
    from ganforge.engine.step import GANUpdate

    original = GANUpdate.train_step

    def train_step(self):  # type: ignore[no-untyped-def]
        if self.step == 1:
            raise RuntimeError("a bug only this rank meets")
        return original(self)

    GANUpdate.train_step = train_step


FAULTS = {"crash": crash_at_step_2, "hide-newest": hide_newest_checkpoint, "skip-images": skip_images, "diverge": diverge_at_step_2,
          "raise-d-loss": raise_d_loss, "refuse-checkpoints": refuse_checkpoints, "crash-once": crash_once_at_step_3}


def faulty_cli(args: list[str]) -> None:
    fault = os.environ.get("DDP_FAULT", "")
    if fault and os.environ.get("RANK") == os.environ.get("DDP_FAULT_RANK", "1"):
        FAULTS[fault]()
    from ganforge.cli import cli

    cli(args=args, prog_name="ganforge")


if __name__ == "__main__":
    if sys.argv[1] == "cli":
        faulty_cli(sys.argv[2:])
    else:
        train_and_save(sys.argv[1], Path(sys.argv[2]))
