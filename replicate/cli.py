"""``python -m replicate <command>``: the thin entry point the Makefile targets call.

    plan       list the runs of a stage, their counted FLOPs and wall-time estimate (submits nothing)
    submit     submit a stage's unfinished runs (slurm | local | debug | inproc)
    status     done / failed / running counts per stage, and failed runs' errors
    collect    gather run records into results/<paper>/records.csv
    compare    reproduced.csv + comparison.md + figure against papers/<paper>/published.csv
    reproduce  drive the stages in order (re-entrant: --no-wait submits and returns)
    run        train one config locally
    explain    every resolved value of a config with its source (paper, assumed, protocol)
    paper-info a paper's metadata (papers/<p>/paper.py): title, default mode, builds on ...
    doctor     environment, CUDA, mmcv ops, data roots, checkpoints: each problem with its fix
    demo       the whole pipeline on micro pre-trained ViTs and scikit-learn's digits (smoke, CPU, minutes)
    micro-pretrain  pre-train (or find cached) the demo's micro MAE / MoCo v3 / BEiT v2 backbones
    backbones  the backbone registry

An error prints one line, ``error: <what, where, the fix>``, and exits 2; add ``--debug``
anywhere on the command line (or set REPLICATE_DEBUG=1) to see its traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import stages
from .errors import EXIT_ERROR, CliError, error_line
from .stages import check_paper

REPO = Path(__file__).resolve().parents[1]


def runs_root(args) -> str:
    return str(Path(args.runs_root or os.environ.get("RUNS_ROOT") or (REPO / "runs")).resolve())


def _stage_runs(args, stage: str):
    """A stage's runs and the configs waiting for search, for the command line's paper/select."""
    return stages.stage_runs(args.paper, stage, runs_root(args), args.select)


def _stage_experiments(args, stage: str):
    """The loaded configs of a stage (errors name the paper, mode or --select glob)."""
    return stages.stage_experiments(args.paper, stage, args.select)


def ensure_runs_root(args) -> Path:
    """Create RUNS_ROOT before the first run; an unwritable one is one clear error."""
    return stages.ensure_runs_root(runs_root(args))


def report_dir(args) -> Path:
    """results/<paper> for real runs; smoke/<paper> (git-ignored) for smoke runs."""
    if getattr(args, "out", None):
        return Path(args.out)
    return REPO / ("smoke" if args.mode == "smoke" else "results") / args.paper


def cmd_plan(args) -> int:
    from .estimate import estimate
    from .sweep import summarize

    print(f"plan: paper={args.paper} mode={args.mode} RUNS_ROOT={runs_root(args)}")
    from . import environments
    print(f"  environment: new runs record {environments.label(environments.current())}"
          f" (ADE20K: the segmentation environment, make reproduce-gatevpt-ade20k)")
    total = []
    for stage in ([args.stage] if args.stage else stages.stages_for(args.mode)):
        runs, pending = _stage_runs(args, stage)
        priced = runs
        if stage == "final":  # before (or during) the search: every config's final runs, priced
            from .sweep import plan_pinned  # with its own lr (the selection changes no FLOP)
            priced = plan_pinned(_stage_experiments(args, stage), runs_root(args), "final")
        est = estimate(priced, args.device, pack=args.pack)
        total.append(est)
        counts = summarize(runs)
        n_params = sorted({_trainable(r) for r in runs[:200]} - {None})
        print(f"  stage {stage:7s}: {len(runs):5d} runs  ({counts['done']} done, "
              f"{counts['started']} started, {counts['failed']} failed, {counts['new']} new)  "
              f"~{est.hours:.1f} GPU-h on one {args.device}"
              + (f" for its {len(priced)} runs once selected" if priced is not runs else ""))
        for line in est.lines():
            print(f"                   {line}")
        if counts["done"]:
            envs = environments.of_records(r.run_dir for r in runs)
            print("                   done runs computed in: " + "; ".join(
                f"{n} in {lab}" for lab, n in sorted(envs.items())))
        if n_params:
            print(f"                   trainable parameters per run: "
                  f"{', '.join(f'{n:,}' for n in n_params[:6])}{' ...' if len(n_params) > 6 else ''}")
        if pending:
            print(f"                   {len(pending)} configs wait for their search grid "
                  f"(e.g. {pending[0]})")
        if args.verbose:
            for r in runs:
                print(f"    {r.run_id}  seed={r.seed} lr={r.experiment.optim.lr} "
                      f"wd={r.experiment.optim.weight_decay}")
    if len(total) > 1:
        print(f"  all stages: {sum(e.flops for e in total) / 1e18:.2f} EFLOP, "
              f"~{sum(e.hours for e in total):.1f} GPU-h on one {args.device}")
    return 0


def _trainable(run) -> Optional[int]:
    """Trainable parameters of a run's model, built without weights (cached per config)."""
    from .engine.train import trainable_count
    try:
        return trainable_count(run.experiment)
    except Exception:
        return None


def cmd_submit(args) -> int:
    return stages.submit_stage(args.paper, args.stage, runs_root(args), select=args.select,
                               executor=args.executor, cluster=args.cluster, pack=args.pack,
                               wait=args.wait)


def cmd_status(args) -> int:
    for line in stages.status_lines(args.paper, args.mode, runs_root(args), args.select):
        print(line)
    return 0


def cmd_compare(args) -> int:
    from .results.report import write_report

    from .sweep import papers_root
    published = papers_root() / args.paper / "published.csv"
    ctx = dict(_extra_context(args.paper) or {})
    ctx["stages"] = tuple(stages.stages_for(args.mode))
    ctx["command"] = f"python -m replicate compare --paper {args.paper} --mode {args.mode}"
    paths = write_report(args.paper, Path(runs_root(args)), report_dir(args), published, ctx)
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0


def _extra_context(paper: str) -> Optional[dict]:
    """The baseline a paper builds on (its paper.py BUILDS_ON, e.g. LSPT -> GateVPT): the report
    shows the paper's numbers beside that paper's reproduced and published ones."""
    from . import papers
    info = papers.info(paper)
    if not info.builds_on:
        return None
    return {"baseline_paper": info.builds_on, "baseline_method": info.baseline_method,
            "baseline_published": papers.papers_root() / info.builds_on / "published.csv"}


def cmd_collect(args) -> int:
    from .results.collect import collect

    df = collect(Path(runs_root(args)), args.paper, stages=tuple(stages.stages_for(args.mode)))
    out = report_dir(args) / "records.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # whole file or the old one
    try:
        df.to_csv(tmp, index=False)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"{len(df)} records -> {out}")
    return 0


def check_reproduce_inputs(args) -> None:
    """What reproduce reads or writes besides the runs, checked before the first stage (not
    after hours of training): the paper, its published table(s), every stage's configs that
    can be loaded now, RUNS_ROOT and the report folder."""
    from .doctor import writable_problem
    from .results.published import load_published
    from .sweep import papers_root

    check_paper(args.paper)
    load_published(papers_root() / args.paper / "published.csv", paper=args.paper)
    ctx = _extra_context(args.paper) or {}
    base = Path(ctx.get("baseline_published", ""))
    if ctx and base.is_file():
        load_published(base, paper=ctx["baseline_paper"])
    _stage_experiments(args, stages.stages_for(args.mode)[0])  # configs load and match --select
    ensure_runs_root(args)
    problem = writable_problem(report_dir(args))
    if problem:
        raise CliError(f"report folder {report_dir(args)}: {problem}; pass --out to write the "
                       f"report elsewhere")


def cmd_reproduce(args) -> int:
    """Drive the stages in order.  With --no-wait each call submits the next unfinished stage
    and returns, so the target can be re-run after each array finishes."""
    check_reproduce_inputs(args)
    outcome = stages.run_stages(args.paper, args.mode, runs_root(args), select=args.select,
                                executor=args.executor, cluster=args.cluster, pack=args.pack,
                                wait=not args.no_wait)
    if outcome.state == "done":
        cmd_collect(args)
        return cmd_compare(args)
    print(_unfinished_message(outcome, args))
    return 0 if outcome.state == "waiting" else outcome.rc or 1


def _unfinished_message(o: stages.StageOutcome, args) -> str:
    """What to do about a stage reproduce left unfinished (waiting, failed or unfinished)."""
    if o.state == "waiting":
        return (f"stage {o.stage} not finished yet: re-run this command when its jobs are done "
                f"(python -m replicate status --paper {args.paper} --mode {args.mode})")
    if o.state == "failed":  # the failures were listed above, one line each
        return (f"stage {o.stage}: {o.n_failed} of {o.n_runs} runs failed (see above): fix the "
                f"cause and re-run this command (failed runs are retried, finished ones kept)")
    return (f"stage {o.stage}: {o.n_left} of {o.n_runs} runs unfinished (stopped or their job "
            f"died; each resumes from its last checkpoint): re-run this command")


def cmd_run(args) -> int:
    from . import config
    from .engine import Run, execute
    from .protocol import get as get_protocol

    from .sweep import final_like_experiment

    exp = config.load(args.config, config.parse_overrides(args.set))
    proto = get_protocol(exp.protocol)
    root = str(ensure_runs_root(args))
    # the same Run as the planner's (sweep.grid_runs / sweep.plan_pinned), so the same run id
    # and directory: a run started here is found done or resumed by plan/submit, and back
    if args.search:
        run = Run(exp, args.seed, "search", proto.search_train, (proto.search_eval,),
                  root, {"config": exp.name})
    else:
        stage = args.stage or ("smoke" if exp.smoke else "pinned")
        run = Run(final_like_experiment(exp), args.seed, stage, proto.final_train,
                  (proto.report,), root, {"config": exp.name})
    from .engine.stop import GracefulStop

    with GracefulStop() as stop:  # SIGTERM/SIGINT: checkpoint at the epoch's end, then stop
        rec = execute(run, should_stop=stop)
    if rec is None:
        print(f"stopped by {stop.signame or 'request'} at an epoch boundary (checkpoint saved): "
              f"run the same command again to resume\nrun dir: {run.run_dir}")
        return stop.exit_code or 1
    print(json.dumps(rec["metrics"], indent=1))
    print(f"run dir: {run.run_dir}")
    return 0


def cmd_backbones(args) -> int:
    from . import backbones
    for name in backbones.registered():
        e = backbones.get(name)
        print(f"{name:40s} source={e.source:14s} file={e.default_file or '-':32s} "
              f"pool={e.default_pool}{'  [tiny]' if e.tiny else ''}\n    {e.note}\n    {e.url}")
        if e.other_files:  # names the same file is also found under in CKPT_ROOT
            print(f"    also accepted as: {', '.join(e.other_files)}")
    return 0


def default_mode(args) -> None:
    """--mode omitted: the paper's own default (``DEFAULT_MODE`` in papers/<p>/paper.py, e.g.
    vptm: search, whose hyper-parameters are unknown; others: pinned)."""
    if getattr(args, "mode", "") is None:
        from . import papers
        args.mode = papers.info(args.paper).default_mode


def cmd_paper_info(args) -> int:
    """Print a paper's metadata (papers/<p>/paper.py), or one field of it (for the Makefile)."""
    import dataclasses

    from . import papers
    check_paper(args.paper)
    info = dataclasses.asdict(papers.info(args.paper))
    if args.field:
        if args.field not in info:
            raise CliError(f"unknown field '{args.field}'; fields: {', '.join(info)}")
        value = info[args.field]
        print(" ".join(value) if isinstance(value, (list, tuple)) else value)
        return 0
    for key, value in info.items():
        print(f"{key:18s} {value}")
    return 0


def cmd_explain(args) -> int:
    """Print every resolved value of a config with its source (paper, assumed, protocol,
    default)."""
    from .explain import explain
    print(explain(args.config, overrides_items=args.set))
    return 0


def cmd_doctor(args) -> int:
    from .doctor import doctor
    return doctor(verbose=args.verbose)


def cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(Path(args.out), executor=args.executor, quick=args.quick,
                    cache_dir=args.cache_dir, search=args.search)


def cmd_micro_pretrain(args) -> int:
    """Pre-train (or find cached) the micro SMOKE backbones (replicate/micro)."""
    from . import micro
    for fam, meta in micro.ensure(args.cache_dir, args.family or None).items():
        print(f"{meta['entry']}: {meta['path']} ({'cached' if meta.get('cached') else 'built'}; "
              f"pre-training {meta['pretrain_wall_s']} s, k-NN val top-1 {meta['knn_val_top1']}%)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m replicate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an error (allowed anywhere on the command line)")
    sub = p.add_subparsers(dest="cmd", required=True)

    def stage_args(sp, stage_choices=("pinned", "search", "final")):
        sp.add_argument("--paper", default="gatevpt")
        sp.add_argument("--mode", choices=("pinned", "search", "smoke"), default=None,
                        help="pinned: the paper's own hyper-parameters; search: grid on val, "
                             "then final runs; smoke: tiny configs (configs/smoke), CPU, "
                             "minutes (default: the paper's DEFAULT_MODE in papers/<p>/paper.py)")
        sp.add_argument("--select", nargs="*", help="glob(s) over configs/<mode>/, e.g. 'vtab1k/mae_vitb16/*'")
        sp.add_argument("--runs-root", help="default: $RUNS_ROOT or ./runs")

    sp = sub.add_parser("plan", help=cmd_plan.__doc__)
    stage_args(sp)
    sp.add_argument("--stage", choices=("pinned", "search", "final", "smoke"))
    sp.add_argument("--device", default="h100",
                    help="device type for the estimate (h100, h100-pcie, h200, a100, cpu)")
    sp.add_argument("--pack", type=int, default=1,
                    help="runs per process, as submit --pack (shares the start-up term)")
    sp.add_argument("-v", "--verbose", action="store_true")
    sp.set_defaults(fn=cmd_plan)

    for name, fn in (("submit", cmd_submit), ("reproduce", cmd_reproduce)):
        sp = sub.add_parser(name)
        stage_args(sp)
        if name == "submit":
            sp.add_argument("--stage", choices=("pinned", "search", "final", "smoke"), required=True)
            sp.add_argument("--wait", action="store_true")
        else:
            sp.add_argument("--no-wait", action="store_true")
            sp.add_argument("--out")
        sp.add_argument("--executor", choices=("slurm", "local", "debug", "inproc"),
                        default=os.environ.get("EXECUTOR", "local"))
        sp.add_argument("--cluster", default=os.environ.get("CLUSTER", "default"),
                        help="slurm/clusters/<name>.yaml")
        sp.add_argument("--pack", type=int, default=1, help="runs per array task")
        sp.set_defaults(fn=fn)

    sp = sub.add_parser("status")
    stage_args(sp)
    sp.set_defaults(fn=cmd_status)
    for name, fn in (("collect", cmd_collect), ("compare", cmd_compare)):
        sp = sub.add_parser(name)
        stage_args(sp)
        sp.add_argument("--out")
        sp.set_defaults(fn=fn)

    sp = sub.add_parser("run", help="train one config locally")
    sp.add_argument("config")
    sp.add_argument("--seed", type=int, default=42)
    sp.add_argument("--stage", help="run folder stage (default: smoke for smoke configs, else "
                                     "pinned): the planned run of the same config and seed")
    sp.add_argument("--search", action="store_true", help="train on the search split, eval val")
    sp.add_argument("--set", nargs="*", help="key=value overrides (recorded in the run's config)")
    sp.add_argument("--runs-root")
    sp.set_defaults(fn=cmd_run)

    sp = sub.add_parser("explain", help="every resolved value of a config and where it comes "
                                         "from: paper table, assumed (with the reason), "
                                         "protocol or default")
    sp.add_argument("config")
    sp.add_argument("--set", nargs="*", help="key=value overrides, as for run")
    sp.set_defaults(fn=cmd_explain)
    sp = sub.add_parser("paper-info", help="a paper's metadata from papers/<p>/paper.py")
    sp.add_argument("--paper", required=True)
    sp.add_argument("--field", help="print only this field (e.g. default_mode)")
    sp.set_defaults(fn=cmd_paper_info)

    sp = sub.add_parser("doctor")
    sp.add_argument("-v", "--verbose", action="store_true")
    sp.set_defaults(fn=cmd_doctor)
    sp = sub.add_parser("demo")
    sp.add_argument("--out", default=str(REPO / "smoke"))
    sp.add_argument("--executor", choices=("inproc", "local"), default="inproc")
    sp.add_argument("--quick", action="store_true", help="fewer epochs (tests)")
    sp.add_argument("--cache-dir", help="micro backbone cache (default $REPLICATE_MICRO_CACHE "
                                        "or ~/.cache/vpt-replicate/micro)")
    sp.add_argument("--search", action="store_true",
                    help="choose each cell's lr on val inside the demo (protocol grid)")
    sp.set_defaults(fn=cmd_demo)
    sp = sub.add_parser("micro-pretrain", help=cmd_micro_pretrain.__doc__)
    sp.add_argument("--cache-dir", help="default $REPLICATE_MICRO_CACHE or ~/.cache/vpt-replicate/micro")
    sp.add_argument("--family", nargs="*", choices=("mae", "mocov3", "beitv2"))
    sp.set_defaults(fn=cmd_micro_pretrain)
    sp = sub.add_parser("backbones")
    sp.set_defaults(fn=cmd_backbones)

    for mod in ("replicate.data.cli", "replicate.seg.cli"):
        try:
            __import__(mod, fromlist=["add_subcommands"]).add_subcommands(sub)
        except ImportError as e:
            if not str(e).startswith(("No module named 'replicate", "cannot import name")) \
                    and "mmseg" not in str(e) and "mmcv" not in str(e):
                raise
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command.  A harness error or OSError ends as one ``error: ...`` line on stderr
    (it names the file or key and the fix) and exit status 2; ``--debug`` anywhere on the
    command line (or REPLICATE_DEBUG=1) re-raises it with its traceback instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("REPLICATE_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    fn = getattr(args, "fn", None) or getattr(args, "func", None)
    if fn is None:
        build_parser().parse_args([*argv, "--help"])
    try:
        default_mode(args)
        return fn(args) or 0
    except Exception as e:
        line = None if debug else error_line(e)
        if line is None:  # a bug (or --debug): the traceback is the report
            raise
        sys.stdout.flush()
        print(line, file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
