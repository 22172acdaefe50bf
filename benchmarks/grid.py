"""Whole-grid benchmark rows (``grid<K>_alone`` / ``grid<K>_packed``): the wall time of K smoke
runs of one grid, each run alone in its own process (as one job each) vs all of them packed in
one process (``engine.packed.execute_packed``); both include start-up, data loading, per-epoch
evaluation and checkpoints.  Called by ``benchmarks/step.py`` (``--grid``).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import List

import torch

from benchmarks.common import build, input_size
from replicate import backbones
from replicate.engine import train as engine

REPO = Path(__file__).resolve().parents[1]

_CHILD = """
import json, sys
sys.path.insert(0, {repo!r})
from replicate.engine import Run, execute
from replicate.engine.packed import execute_packed
runs = [Run.from_dict(d) for d in json.load(open(sys.argv[1]))]
if len(runs) == 1:
    execute(runs[0], echo=lambda s: None)
else:
    execute_packed(runs, echo=lambda s: None)
"""


def grid_runs(method: str, backbone: str, args, device: torch.device, root: Path) -> list:
    """``args.grid`` smoke runs of one grid (lr/wd differ) on the synthetic task at the
    backbone's input size; a non-tiny backbone gets a random checkpoint in its real layout."""
    from replicate import config
    from replicate.engine import Run

    entry = backbones.get(backbone)
    ckpt = ""
    if not entry.tiny:
        if entry.source != "mae":
            raise ValueError(f"grid rows need a tiny or an MAE-layout backbone, not {backbone}")
        ckpt = str(root / "random_mae_layout.pth")  # the real loader path, random weights
        torch.save({"model": entry.build().state_dict()}, ckpt)
    model, _ = build(backbone, method, 4, torch.device("cpu"), 0)
    raw = {
        "name": f"bench-{method}", "paper": "demo", "smoke": True, "protocol": "synthetic-smoke",
        "backbone": {"name": backbone, "checkpoint": ckpt},
        "method": {"type": method},
        "data": {"benchmark": "synthetic", "task": "shapes", "root": "",
                 "image_size": input_size(model), "num_workers": 0, "in_memory": True,
                 "transform": "none"},
        "optim": {"optimizer": "sgd", "lr": 0.1, "batch_size": args.batch,
                  "epochs": args.grid_epochs, "warmup_epochs": min(1, args.grid_epochs)},
        "train": {"device": device.type, "precision": "auto", "eval_every": 1,
                  "compile": args.grid_compile},
    }
    exp = config.from_dict(raw, source="<benchmarks/step.py grid>")
    lrs = [0.05 * 2 ** i for i in range(args.grid)]
    return [Run(exp.replace(**{"optim.lr": lr, "optim.weight_decay": 1e-4 * (i % 3)}), 0,
                "search", "train", ("val",), str(root / "runs"), {})
            for i, lr in enumerate(lrs)]


def bench_grid(method: str, backbone: str, args, device: torch.device) -> List[dict]:
    """The grid's wall time, each run alone in its own process (as one job each) vs all of
    them packed in one process; both include start-up, data loading, evaluation, checkpoints."""
    import dataclasses
    import json
    import shutil
    import subprocess
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="bench-grid-"))
    try:
        runs = grid_runs(method, backbone, args, device, root)
        script = root / "child.py"
        script.write_text(_CHILD.format(repo=str(REPO)))
        env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))

        def timed(group, name: str) -> float:
            spec = root / f"{name}.json"
            spec.write_text(json.dumps([r.to_dict() for r in group]))
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, str(script), str(spec)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"grid child failed: {done.stderr.strip()[-800:]}")
            return time.perf_counter() - t0

        alone = sum(timed([r], f"alone{i}") for i, r in enumerate(runs))
        packed_runs = [dataclasses.replace(r, runs_root=str(root / "packed")) for r in runs]
        packed = timed(packed_runs, "packed")
        for r in runs + packed_runs:  # every run really finished
            if not (r.run_dir / "record.json").is_file():
                raise RuntimeError(f"grid run {r.run_dir} did not finish")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    k, e = args.grid, args.grid_epochs
    images = k * e * 800  # synthetic train split: 800 images per epoch
    note = (f"{k} smoke runs x {e} epochs (800 train + 200 val images per epoch); wall time "
            "with start-up, data, evaluation and checkpoints")
    base = {"method": method, "backbone": backbone, "configs": k, "batch": args.batch,
            "precision": engine.resolve_precision(type("T", (), {"precision": "auto"})(),
                                                  device)[0],
            "attention": "sdpa", "compile": args.grid_compile, "data": "uint8 on device"}
    return [{**base, "variant": f"grid{k}_alone", "images_per_s": images / alone,
             "step_ms": float("nan"), "speedup_vs_alone": 1.0,
             "note": note + "; one process per run"},
            {**base, "variant": f"grid{k}_packed", "images_per_s": images / packed,
             "step_ms": float("nan"), "speedup_vs_alone": alone / packed,
             "note": note + "; one packed process"}]
