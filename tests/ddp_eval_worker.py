"""Run by torchrun in test_sharded_evaluation.py: evaluate one checkpoint on 2 CPU processes, sharded.

Each rank writes its result and how many generated and reference images it ran through the feature
extractor, so the test can check the split as well as the numbers.
"""

import json
import sys
from pathlib import Path

import ganforge.components.metrics.features as features
import ganforge.components.metrics.reference as reference
from ganforge.engine.distributed import leave, place_process
from ganforge.engine.restore import restore
from ganforge.evaluation import evaluate_generator

run_dir, inception, out, n, batch_size = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5])
placement = place_process("cpu")
counts = {"generated": 0, "reference": 0}
original = features.extract_features


def counting(batches, extractor, *, total, progress=True, label="features"):
    counts["reference" if label == "reference" else "generated"] += total
    return original(batches, extractor, total=total, progress=progress, label=label)


features.extract_features = counting
reference.extract_features = counting
run = restore(run_dir, device="cpu")
result = evaluate_generator(run.generator, loaded=run.loaded, metrics=["fid", "kid"], n=n, inception=inception,
                            batch_size=batch_size, progress=False, sharded=True)
(out / f"rank{placement.rank}.json").write_text(json.dumps({"values": result.values, "counts": counts}))
leave(placement)
