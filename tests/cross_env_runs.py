"""Train the GateVPT smoke configs on the CPU with a fixed seed in *this* interpreter and print
one JSON object: per config, the initial weights' checksum, the first training batch's checksum
and logits, and the finished run's record metrics and environment.

tests/test_cross_env.py starts it under both pinned environments (classification: current
torch; segmentation: torch 2.1) and compares the two.  Usage:
``python tests/cross_env_runs.py RUNS_ROOT CONFIG [CONFIG ...]``
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEED = 42


def _sum(t) -> float:
    return float(t.detach().double().sum())


def probe_and_run(config_path: str, runs_root: str) -> dict:
    import torch

    from replicate import config, data
    from replicate.engine import Run, execute
    from replicate.engine.train import Batches, build_model, normalizer
    from replicate.protocol import get as get_protocol
    from replicate.sweep import final_like_experiment

    exp = config.load(config_path, {"train.device": "cpu"})
    proto = get_protocol(exp.protocol)
    # the same Run as `python -m replicate run CONFIG --seed 42` (a smoke config: stage smoke)
    run = Run(final_like_experiment(exp), SEED, "smoke", proto.final_train, (proto.report,),
              runs_root, {"config": exp.name})
    model, entry = build_model(run, torch.device("cpu"))
    split = data.load(run.experiment.data, run.train_split, train=True)
    x, _ = next(iter(Batches(split, run.experiment.optim.batch_size, torch.device("cpu"), True,
                             0).epoch(SEED, 0)))
    model.eval()
    with torch.no_grad():
        logits = model(normalizer(entry, torch.device("cpu"))(x)).double()
    rec = execute(run, echo=lambda line: None)
    return {"init_sum": sum(_sum(p) for p in model.state_dict().values()
                            if p.is_floating_point()),
            "batch_sum": _sum(x), "logits": logits.flatten()[:200].tolist(),
            "logits_abs_sum": float(logits.abs().sum()),
            "metrics": rec["metrics"], "env": rec["env"]}


def main(argv) -> int:
    import torch

    torch.set_num_threads(1)
    runs_root, configs = argv[0], argv[1:]
    print(json.dumps({c: probe_and_run(c, runs_root) for c in configs}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
