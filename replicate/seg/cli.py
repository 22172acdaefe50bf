"""``python -m replicate seg-train | seg-test-ms | seg-plan`` (mounted by replicate/cli.py).

    add_subcommands(subparsers)   # each parser sets func(args) -> int exit code

Nothing here imports mmseg until a command runs, so ``python -m replicate --help`` works
without the segmentation extra.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Dict, List, Optional

DEFAULT_CONFIG_DIR = "papers/gatevpt/configs/ade20k"


def _parse_options(items: Optional[List[str]]) -> Dict[str, Any]:
    from ..config import parse_overrides
    return parse_overrides(items, "--cfg-options")


def cmd_seg_train(args: argparse.Namespace) -> int:
    from .run import default_work_dir, seg_train

    opts = _parse_options(args.cfg_options)
    work_dir = args.work_dir or str(default_work_dir(args.config))
    rec = seg_train(args.config, work_dir, resume=not args.no_resume, cfg_options=opts,
                    launcher=args.launcher, eval_ms=not args.no_ms)
    m = rec["metrics"]
    print(f"{rec['experiment']}: " + " ".join(f"{k} {v:.2f}" for k, v in sorted(m.items())
                                              if k.startswith("miou"))
          + (" [smoke]" if rec.get("smoke") else "") + f"  ({work_dir}/record.json)")
    return 0


def cmd_seg_test_ms(args: argparse.Namespace) -> int:
    from .run import load_seg_config, prepare_data, seg_test_ms

    cfg = load_seg_config(args.config, _parse_options(args.cfg_options))
    prepare_data(cfg, args.config)
    out = os.path.dirname(os.path.abspath(args.checkpoint))
    print(json.dumps(seg_test_ms(cfg, args.checkpoint, args.work_dir or out), indent=1))
    return 0


def cmd_seg_plan(args: argparse.Namespace) -> int:
    from .run import seg_plan

    plan = seg_plan(args.config_dir, args.runs_root)
    if args.json:
        print(json.dumps(plan, indent=1, default=str))
        return 0
    for p in plan:
        print(f"{p['state']:8s} {p['name']:45s} bs {p['effective_batch_size']:>3} "
              f"iters {p['iters']:>7} lr {p['lr']:g}  {p['work_dir']}")
    print(f"{len(plan)} runs; {sum(p['state'] == 'done' for p in plan)} done")
    return 0


def cmd_seg_submit(args: argparse.Namespace) -> int:
    """Submit the unfinished ADE20K runs as one job array through the shared launcher."""
    import fnmatch
    from pathlib import Path

    from .. import launch
    from .run import SegJob, seg_plan

    root = Path(args.runs_root or os.environ.get("RUNS_ROOT") or "runs").resolve()
    plan = [p for p in seg_plan(args.config_dir, str(root)) if p["state"] != "done"]
    if args.select:
        plan = [p for p in plan if any(fnmatch.fnmatch(p["name"] or "", s) for s in args.select)]
    if not plan:
        print("ADE20K: every selected run is done")
        return 0
    profile = launch.load_profile(args.cluster) if args.executor == "slurm" else None
    folder = root / "gatevpt" / "_submitit" / "ade20k"
    code = launch.snapshot_code(folder / "code") if args.executor == "slurm" else None
    ex = launch.make_executor(args.executor, folder, profile, job_name="ade20k", code_dir=code,
                              environment="segmentation")  # mmseg: the torch 2.1 environment
    jobs = []
    with ex.batch():
        for p in plan:
            jobs.append(ex.submit(SegJob(), p["config"], p["work_dir"]))
    print(f"submitted {len(jobs)} ADE20K run(s); logs in {folder}")
    if args.wait:
        states = launch.wait(jobs)
        return 0 if all(s["state"] in ("COMPLETED", "DONE") for s in states) else 1
    return 0


def add_subcommands(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser("seg-train", help="train + evaluate one ADE20K (mmseg) config")
    p.add_argument("config", help="e.g. papers/gatevpt/configs/ade20k/mae_gatevpt.py")
    p.add_argument("--work-dir", help="run directory (default: $RUNS_ROOT/<paper>/ade20k/"
                                      "<name>-<config hash>)")
    p.add_argument("--no-resume", action="store_true",
                   help="start from scratch even if the work dir has checkpoints")
    p.add_argument("--no-ms", action="store_true", help="skip the multi-scale evaluation")
    p.add_argument("--launcher", default="none", choices=["none", "pytorch", "slurm"])
    p.add_argument("--cfg-options", nargs="+", metavar="KEY=VALUE",
                   help="config overrides (smoke/debug only: numbers belong in config files)")
    p.set_defaults(func=cmd_seg_train)

    p = subparsers.add_parser("seg-test-ms", help="multi-scale mIoU of a trained checkpoint")
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--work-dir")
    p.add_argument("--cfg-options", nargs="+", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_seg_test_ms)

    p = subparsers.add_parser("seg-plan", help="list the ADE20K runs and their state")
    p.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR)
    p.add_argument("--runs-root", default=None, help="default $RUNS_ROOT or ./runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_seg_plan)

    p = subparsers.add_parser("seg-submit", help="submit the unfinished ADE20K runs (job array)")
    p.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR)
    p.add_argument("--runs-root", default=None, help="default $RUNS_ROOT or ./runs")
    p.add_argument("--select", nargs="*", help="glob(s) over run names")
    p.add_argument("--executor", choices=("slurm", "local", "debug"),
                   default=os.environ.get("EXECUTOR", "local"))
    p.add_argument("--cluster", default=os.environ.get("CLUSTER", "default"))
    p.add_argument("--wait", action="store_true")
    p.set_defaults(func=cmd_seg_submit)
