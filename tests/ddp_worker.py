"""Run by torchrun in test_training.py: train a few steps on 2 CPU processes, save each rank's weights."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from ganforge.assembly import assemble
from ganforge.blueprint.validation import load_blueprint
from ganforge.engine.distributed import leave, place_process
from ganforge.engine.trainer import Trainer, TrainOptions
from ganforge.registry import default_registry
from ganforge.engine.planning import plan_training
from ganforge.engine.build import build_dataset

blueprint, out = sys.argv[1], Path(sys.argv[2])
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
torch.save({"params": params, "step": trainer.update.step, "same_data": bool(torch.equal(gathered[0], gathered[1]))},
           out / f"rank{placement.rank}.pt")
leave(placement)
