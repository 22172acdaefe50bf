"""Write ``results/<paper>/``: reproduced.csv, runs.csv, comparison.md and figures/*.png.

    python -m replicate.results.report --paper gatevpt --runs-root $RUNS_ROOT --out results \\
        --published papers/gatevpt/published.csv

A paper that builds on another (``BUILDS_ON`` in its ``papers/<p>/paper.py``; LSPT -> GateVPT)
also gets its reproduced numbers beside that paper's reproduced and published numbers on the
same cells (the baseline paper defaults to ``BUILDS_ON``, its runs to the same RUNS_ROOT and its
published table to ``papers/<BUILDS_ON>/published.csv`` next to the paper's).

Everything written is a function of the run records and the published table (plus the
'Generated at', 'Commit' and 'Command' header lines), so re-running gives the same files.
The inputs are read and checked first, the files written into a staging folder, then each moved
into place with one rename: an error never leaves a half-written report.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from .. import benchmarks
from .aggregate import aggregate
from .collect import DEFAULT_STAGES, CollectError, collect
from .compare import (STATUSES, check_published, compare, measured_under, paper_info,
                      vtab_mean_rule)
from .figures import plot_comparison
from .published import CELL_KEY, cells, load_published


def bench_title(name: str) -> str:
    """How reports print a benchmark (its ``title`` in ``replicate/benchmarks.py``)."""
    b = benchmarks.find_benchmark(name)
    return b.title if b is not None else name


# ------------------------------------------------------------------ formatting
def _f(x, nd: int = 2, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    return f"{x:+.{nd}f}" if signed else f"{x:.{nd}f}"


def _ours(r) -> str:
    if r["mean"] is None or np.isnan(r["mean"]):
        return "—"
    if int(r["n"]) == 0:
        return f"{r['mean']:.2f}"
    return f"{r['mean']:.2f} ± {r['std']:.2f} ({int(r['n'])})"


def _where(r) -> str:
    if r["task"] == "group_mean":
        return f"{r['group']} (group mean)"
    if r["task"] == "mean":
        b = benchmarks.find_benchmark(r["benchmark"])
        return b.average_label() if b is not None else "AVG (mean)"
    if r["task"] == "mean_of_group_means":
        return "mean of group means"
    return f"{r['task']}" + (f" ({r['group']})" if r["group"] else "")


def _md_table(header: Sequence[str], rows: List[Sequence[str]]) -> List[str]:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return out


def _repo_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def default_command(paper: str, runs_root: Path, out_dir: Path, published: Path,
                    ctx: dict) -> str:
    parts = ["python", "-m", "replicate.results.report", "--paper", paper, "--runs-root",
             str(runs_root), "--out", str(out_dir), "--published", str(published)]
    if tuple(ctx.get("stages", DEFAULT_STAGES)) != DEFAULT_STAGES:
        parts += ["--stages", ",".join(ctx["stages"])]
    for key in ("baseline_paper", "baseline_runs_root", "baseline_published"):
        if ctx.get(key):
            parts += ["--" + key.replace("_", "-"), str(ctx[key])]
    if ctx.get("figures", True) is False:
        parts.append("--no-figures")
    return " ".join(shlex.quote(p) for p in parts)


# ------------------------------------------------------------------ sections
def _status_lines(paper: str, comp: pd.DataFrame, runs: pd.DataFrame,
                  unfinished: pd.DataFrame, published: pd.DataFrame) -> List[str]:
    info = paper_info(paper)
    lines = ["## Status", ""]
    if info.reconstruction:
        lines.append(f"- **RECONSTRUCTION.** {info.status_note}")
        lines.append(f"- **Published value unavailable** for {info.key.upper()}'s own "
                     f"method(s): {info.unavailable_reason}.")
    elif info.status_note:
        lines.append(f"- {info.status_note}")
    n_smoke = int(runs["smoke"].sum()) if not runs.empty else 0
    if n_smoke and n_smoke == len(runs):
        lines.append(f"- **SMOKE**: all {n_smoke} run values come from smoke runs (tiny model or "
                     f"data): nothing in this report reproduces a paper.")
    elif n_smoke:
        lines.append(f"- **SMOKE**: {n_smoke} of {len(runs)} run values come from smoke runs "
                     f"(tiny model or data); their cells are marked `smoke` and never count "
                     f"as reproduced.")
    else:
        lines.append("- No smoke runs among the collected records.")
    if runs.empty:
        lines.append("- Runs: no finished run records.")
    else:
        st = ", ".join(f"{s}: {len(g)}" for s, g in runs.groupby("stage"))
        lines.append(f"- Runs: {len(runs)} run values ({st}).")
    if not unfinished.empty:
        c = unfinished["state"].value_counts()
        lines.append("- Not finished: " + ", ".join(f"{int(c[s])} {s}" for s in
                                                    ("failed", "started", "invalid") if s in c)
                     + " (listed under 'Failed and unfinished runs').")
    if not runs.empty:
        per_run = runs.drop_duplicates("run_id")
        prec = per_run["precision"].replace("", "unrecorded").value_counts()
        lines.append("- Precision of the runs: " + ", ".join(f"{k} ({int(v)} runs)"
                                                            for k, v in prec.items())
                     + " (fp32+tf32: float32 with TF32 matmuls on CUDA, as the official code).")
    lines.append(f"- Published values: {len(published)} rows in the published table.")
    counts = comp["status"].value_counts() if not comp.empty else pd.Series(dtype=int)
    lines.append("- Cells: " + (", ".join(f"{s} {int(counts[s])}" for s in STATUSES
                                          if s in counts) or "none") + ".")
    return lines + [""]


def _rule_lines(checks: pd.DataFrame) -> List[str]:
    lines = ["## Rule", "",
             "A cell is `reproduced` when |Δ| ≤ max(tolerance, 2 × std over seeds), with Δ = "
             "our mean − published and the tolerance of the records' protocol (0.5 per FGVC "
             "dataset, 1.0 per VTAB-1k task, 1.0 mIoU). Std is the sample std over seeds "
             "(0 for one seed). FGVC AVG = mean of the 5 dataset means; VTAB-1k group mean = mean "
             "of its task means; VTAB-1k AVG = mean over the 19 task means. Aggregates are "
             "computed only when every member task has runs."]
    rule = vtab_mean_rule(checks)
    if rule:
        lines += ["", rule]
    return lines + [""]


def _benchmark_sections(comp: pd.DataFrame) -> List[str]:
    lines: List[str] = []
    if comp.empty:
        return ["## Comparison", "", "Nothing to compare: no runs and no published values.", ""]
    for (bench, stage), df in comp.groupby(["benchmark", "stage"], sort=False):
        title = bench_title(bench)
        lines += [f"## {title}" + (f" — stage `{stage}`" if stage else " — no runs"), ""]
        rows = []
        for _, r in df.iterrows():
            rows.append([r["backbone"], r["method"], _where(r), r["table"],
                         r["published_text"], r["measured_by"], _ours(r),
                         _ours_protocol(r), _f(r["delta"], signed=True),
                         _f(r["threshold"]), r["status"], _note(r)])
        lines += _md_table(["backbone", "method", "cell", "table", "published",
                            "measured by", "ours mean ± std (n)", "our protocol, precision",
                            "Δ", "max(tol, 2·std)", "status", "note"], rows)
        lines.append("")
        keys = sorted({k for k in df["measured_by"] if k})
        if keys:
            lines += ["'measured by': " + "; ".join(f"`{k}` = {measured_under(k)}"
                                                    for k in keys) + ".", ""]
    return lines


def _ours_protocol(r) -> str:
    """The protocol(s) and precision(s) our runs of a cell used."""
    parts = [x for x in (str(r.get("protocol") or ""), str(r.get("precision") or "")) if x]
    return ", ".join(parts)


def _note(r) -> str:
    if r["status"] in ("reproduced", "not reproduced"):
        # the rule is stated once above; say only when the tolerance is not a protocol's,
        # and what aggregate() noted about the cell (e.g. differing seed sets)
        notes = [] if r["tolerance_source"].startswith("protocol") else \
            [f"tolerance: {r['tolerance_source']}"]
        return "; ".join(notes + ([r["cell_note"]] if r["cell_note"] else []))
    return r["reason"]


def _side_by_side(rep: pd.DataFrame) -> List[str]:
    """Every method measured here, per benchmark and stage (VPTM vs its same-backbone
    baselines; GateVPT vs VPT)."""
    rep = rep[rep["complete"] & rep["mean"].notna()]
    if rep.empty or rep["method"].nunique() < 2:
        return []
    lines = ["## Methods side by side (ours, mean ± std (n))", ""]
    for (bench, stage), df in rep.groupby(["benchmark", "stage"], sort=False):
        methods = sorted(df["method"].unique())
        if len(methods) < 2:
            continue
        lines += [f"### {bench_title(bench)} — stage `{stage}`", ""]
        rows = []
        keyed = df.set_index(["backbone", "group", "task", "metric", "method"])
        seen = []
        for _, r in df.iterrows():
            k = (r["backbone"], r["group"], r["task"], r["metric"])
            if k in seen:
                continue
            seen.append(k)
            row = [r["backbone"], _where(r)]
            for m in methods:
                row.append(_ours(keyed.loc[k + (m,)]) if k + (m,) in keyed.index else "—")
            rows.append(row)
        lines += _md_table(["backbone", "cell"] + methods, rows) + [""]
    return lines


def _beside_baseline(paper: str, rep: pd.DataFrame, base_rep: pd.DataFrame,
                     base_pub: pd.DataFrame, base_paper: str, base_method: str) -> List[str]:
    info = paper_info(paper)
    title = f"## {paper.upper()} beside {base_paper} ({base_method}: ours and published)"
    if rep.empty:
        return [title, "", f"No finished {paper.upper()} runs yet.", ""]
    own = rep[rep["method"].map(info.is_own)]
    own = own[own["complete"] & own["mean"].notna()]
    if own.empty:
        return [title, "", f"No finished {paper.upper()} runs yet.", ""]
    bpub = {}
    if base_pub is not None and not base_pub.empty:
        bc = cells(base_pub[base_pub["method"] == base_method])
        bpub = {tuple(r[c] for c in CELL_KEY if c != "method"): r for _, r in bc.iterrows()}
    brep = {}
    if base_rep is not None and not base_rep.empty:
        b = base_rep[(base_rep["method"] == base_method) & base_rep["complete"]]
        brep = {(r["stage"], r["backbone"], r["benchmark"], r["group"], r["task"], r["metric"]): r
                for _, r in b.iterrows()}
    rows = []
    for _, r in own.iterrows():
        k = (r["backbone"], r["benchmark"], r["group"], r["task"], r["metric"])
        b = brep.get((r["stage"],) + k)
        p = bpub.get(k)
        rows.append([r["stage"], r["backbone"], bench_title(r["benchmark"]),
                     _where(r), r["method"], _ours(r), _ours(b) if b is not None else "—",
                     p["value_text"] if p is not None else "—",
                     _f(r["mean"] - b["mean"], signed=True) if b is not None else "",
                     _f(r["mean"] - p["value"], signed=True) if p is not None else ""])
    lines = [title, "",
             f"Whether the reconstruction improves on its base: {paper.upper()}'s reproduced "
             f"mean beside {base_method}'s reproduced mean (runs of paper `{base_paper}`, same "
             f"stage) and {base_method}'s published value."
             + (" Smoke runs are included here only as smoke." if own["smoke"].any() else ""),
             ""]
    lines += _md_table(["stage", "backbone", "benchmark", "cell", "method",
                        f"{paper.upper()} ours", f"{base_method} ours",
                        f"{base_method} published", f"Δ vs {base_method} ours",
                        f"Δ vs {base_method} published"], rows)
    return lines + [""]


def _consistency_lines(checks: pd.DataFrame) -> List[str]:
    lines = ["## Consistency of the published table", ""]
    if checks.empty:
        return lines + ["No aggregate with all its members is printed: nothing to check.", ""]
    hard = checks[~checks["informational"]]
    bad = hard[~hard["ok"]]
    if bad.empty:
        lines.append(f"All {len(hard)} checks pass (each printed aggregate follows from the "
                     f"printed members within the rounding of its last digit).")
    else:
        lines.append(f"**{len(bad)} of {len(hard)} checks fail**: "
                     + "; ".join(f"{r['check']} {r['table']} {r['backbone']} {r['method']}: "
                                 f"computed {r['computed']:.4f} vs printed {r['printed_text']} "
                                 f"(Δ {r['diff']:+.4f})" for _, r in bad.iterrows()) + ".")
    lines.append("")
    rows = [[r["check"], r["table"], r["backbone"], r["method"], r["inputs"],
             f"{r['computed']:.4f}", r["printed_text"], f"{r['diff']:+.4f}",
             ("info: " if r["informational"] else "") + ("match" if r["ok"] else "NO MATCH")]
            for _, r in checks.iterrows()]
    lines += _md_table(["check", "table", "backbone", "method", "inputs", "computed", "printed",
                        "Δ", "result"], rows)
    return lines + [""]


def _cost_lines(runs: pd.DataFrame) -> List[str]:
    """Measured cost of each stage: summed wall time of its finished runs (a packed run's
    record holds its share of the pack's time) and the median training throughput."""
    lines = ["## Measured cost per stage", ""]
    if runs.empty or "wall_time_s" not in runs:
        return lines + ["No finished runs.", ""]
    per_run = runs.drop_duplicates("run_id")
    rows = []
    for stage, g in per_run.groupby("stage", sort=True):
        wall = pd.to_numeric(g["wall_time_s"], errors="coerce")
        ips = pd.to_numeric(g["images_per_s"], errors="coerce")
        rows.append([stage, str(len(g)), f"{wall.sum() / 3600:.2f}",
                     f"{ips.median():.0f}" if ips.notna().any() else "—",
                     ", ".join(sorted({str(d) for d in g["device"] if d}))])
    return lines + _md_table(["stage", "runs", "device-hours", "median train images/s",
                              "devices"], rows) + [""]


def _environment_lines(runs: pd.DataFrame) -> List[str]:
    """Where the numbers were computed: per stage and benchmark, the pinned environment
    (replicate/environments.py), torch build and CUDA version of its finished runs."""
    from ..environments import label_from_text

    lines = ["## Environments", ""]
    if runs.empty or "environment" not in runs:
        return lines + ["No finished runs.", ""]
    rows = []
    per_run = runs.drop_duplicates("run_id")
    for (stage, bench), g in per_run.groupby(["stage", "benchmark"], sort=True):
        counts = g["environment"].map(label_from_text).value_counts()
        rows.append([stage, bench, "; ".join(f"{lab}: {n} run(s)"
                                             for lab, n in sorted(counts.items()))])
    return lines + _md_table(["stage", "benchmark", "environment (runs)"], rows) + [""]


def _selection_lines(runs: pd.DataFrame) -> List[str]:
    """Per searched config: the lr/wd the search selected on val, the paper's own lr where it
    prints one, and the grid points skipped because they diverged."""
    if runs.empty or "selected_lr" not in runs:
        return []
    fin = runs[runs["selected_lr"].notna()].drop_duplicates("experiment")
    if fin.empty:
        return []
    rows = [[r["backbone"], r["method"], bench_title(r["benchmark"]),
             r["task"], f"{r['selected_lr']:g}", f"{r['selected_wd']:g}",
             _f(r["selection_val_top1"]),
             f"{r['paper_lr']:g}" if pd.notna(r["paper_lr"]) else "—",
             r["skipped_diverged"] or "none"]
            for _, r in fin.iterrows()]
    return (["## Search: selected hyper-parameters", "",
             "Selected on val (last-epoch top-1, ties to the smaller lr); grid points whose loss "
             "turned non-finite are skipped, as the official tune scripts skip them.", ""]
            + _md_table(["backbone", "method", "benchmark", "task", "selected lr",
                         "selected wd", "val top-1", "paper's lr", "skipped (diverged)"], rows)
            + [""])


def _unfinished_lines(unfinished: pd.DataFrame) -> List[str]:
    lines = ["## Failed and unfinished runs", ""]
    if unfinished.empty:
        return lines + ["None.", ""]
    rows = [[r["stage"], r["run_dir"], r["state"], r["detail"]] for _, r in unfinished.iterrows()]
    return lines + _md_table(["stage", "run directory (under RUNS_ROOT)", "state", "detail"],
                             rows) + [""]


# ------------------------------------------------------------------ entry point
def write_report(paper: str, runs_root: Path, out_dir: Path, published: Path,
                 extra_context: Optional[dict] = None) -> Dict[str, object]:
    """Collect, aggregate and compare the runs of ``paper``; write
    ``<out_dir>/<paper>/{reproduced.csv, runs.csv, comparison.md, figures/<benchmark>.png}``
    (``out_dir`` is the results root; when it is already named ``<paper>`` the files go
    straight into it).

    ``extra_context`` (all optional): ``command`` (shown as the command that produced the
    report), ``stages`` (default final, pinned), ``baseline_paper`` / ``baseline_runs_root`` /
    ``baseline_published`` / ``baseline_method`` (default: paper.py's BUILDS_ON, the same
    RUNS_ROOT, papers/<BUILDS_ON>/published.csv, BASELINE_METHOD; ``base_*`` spellings accepted), ``figures`` (False: skip the PNGs),
    ``generated_at`` and ``commit`` (fixed header values, for tests).  Returns the written
    paths (``figures`` is a list)."""
    ctx = dict(extra_context or {})
    for short in ("paper", "runs_root", "published", "method"):  # accept base_* spellings
        if f"base_{short}" in ctx:
            ctx.setdefault(f"baseline_{short}", ctx.pop(f"base_{short}"))
    runs_root, out_dir, published = Path(runs_root), Path(out_dir), Path(published)
    stages = tuple(ctx.get("stages", DEFAULT_STAGES))
    pub = load_published(published, paper=paper)
    runs = collect(runs_root, paper, stages)
    unfinished = runs.attrs["unfinished"]
    rep = aggregate(runs)
    comp = compare(rep, pub, paper)
    checks = check_published(pub)

    dest = out_dir if out_dir.name == paper else out_dir / paper
    dest.mkdir(parents=True, exist_ok=True)
    # every file is written into a staging folder beside dest and moved in only when all of
    # them exist: a failure on the way leaves the previous report whole, never half of each
    stage = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.writing-"))
    try:
        paths = _write_files(paper, runs_root, out_dir, published, ctx, stage, pub, runs,
                             unfinished, rep, comp, checks)
        return _move_in(stage, dest, paths)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _move_in(stage: Path, dest: Path, paths: Dict[str, object]) -> Dict[str, object]:
    """Move the staged files into ``dest`` (one atomic rename each, comparison.md last, as it
    links the others); return their final paths."""
    moved: Dict[str, object] = {}
    for key in sorted(paths, key=lambda k: k == "comparison"):
        value = paths[key]
        finals = []
        for p in (value if isinstance(value, list) else [value]):
            final = dest / Path(p).relative_to(stage)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, final)
            finals.append(final)
        moved[key] = finals if isinstance(value, list) else finals[0]
    return {k: moved[k] for k in paths}


def _write_files(paper: str, runs_root: Path, out_dir: Path, published: Path, ctx: dict,
                 dest: Path, pub: pd.DataFrame, runs: pd.DataFrame, unfinished: pd.DataFrame,
                 rep: pd.DataFrame, comp: pd.DataFrame, checks: pd.DataFrame
                 ) -> Dict[str, object]:
    stages = tuple(ctx.get("stages", DEFAULT_STAGES))
    paths: Dict[str, object] = {}
    paths["reproduced"] = dest / "reproduced.csv"
    rep.to_csv(paths["reproduced"], index=False, float_format="%.4f", lineterminator="\n")
    paths["runs"] = dest / "runs.csv"
    runs.to_csv(paths["runs"], index=False, float_format="%.4f", lineterminator="\n")
    info = paper_info(paper)
    figs = (plot_comparison(comp, runs, dest / "figures", info.title.split(" (")[0])
            if ctx.get("figures", True) else [])
    paths["figures"] = figs

    # the paper this one builds on (its paper.py BUILDS_ON, e.g. LSPT -> GateVPT), shown beside
    base_paper = ctx.get("baseline_paper", info.builds_on)
    beside: List[str] = []
    if base_paper:
        base_runs_root = Path(ctx.get("baseline_runs_root") or runs_root)
        base_pub_path = Path(ctx.get("baseline_published")
                             or published.parent.parent / base_paper / "published.csv")
        base_pub = (load_published(base_pub_path, paper=base_paper) if base_pub_path.is_file()
                    else None)
        err: List[str] = []
        try:
            base_rep = aggregate(collect(base_runs_root, base_paper, stages))
        except CollectError as e:  # a missing baseline never hides the main report
            base_rep, err = None, [f"(baseline runs not read: {e})", ""]
        beside = _beside_baseline(paper, rep, base_rep, base_pub, base_paper,
                                  ctx.get("baseline_method")
                                  or (info.baseline_method if base_paper == info.builds_on
                                      else "") or base_paper) + err

    command = ctx.get("command") or default_command(paper, runs_root, out_dir, published, ctx)
    generated = ctx.get("generated_at") or time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    lines = [f"# {info.title}: reproduced vs published", "",
             "<!-- generated by replicate.results.report from run records; do not edit -->",
             f"Generated at: {generated}  ",
             f"Commit: {ctx.get('commit') or _repo_commit()}  ",
             f"Command: `{command}`", ""]
    lines += _status_lines(paper, comp, runs, unfinished, pub)
    lines += _rule_lines(checks)
    lines += _benchmark_sections(comp)
    lines += beside
    lines += _side_by_side(rep)
    lines += _consistency_lines(checks)
    lines += _selection_lines(runs)
    lines += _cost_lines(runs)
    lines += _environment_lines(runs)
    lines += _unfinished_lines(unfinished)
    if figs:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}](figures/{p.name})" for p in figs] + [""]
    paths["comparison"] = dest / "comparison.md"
    paths["comparison"].write_text("\n".join(lines).rstrip("\n") + "\n")
    return paths


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replicate.results.report",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--paper", required=True)
    ap.add_argument("--runs-root", required=True, type=Path)
    ap.add_argument("--out", default=Path("results"), type=Path)
    ap.add_argument("--published", type=Path,
                    help="default: papers/<paper>/published.csv")
    ap.add_argument("--stages", default=",".join(DEFAULT_STAGES))
    ap.add_argument("--baseline-paper")
    ap.add_argument("--baseline-runs-root", type=Path)
    ap.add_argument("--baseline-published", type=Path)
    ap.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    a = ap.parse_args(argv)
    published = a.published or Path("papers") / a.paper / "published.csv"
    ctx = {"stages": tuple(s for s in a.stages.split(",") if s), "figures": not a.no_figures}
    for k in ("baseline_paper", "baseline_runs_root", "baseline_published"):
        if getattr(a, k):
            ctx[k] = getattr(a, k)
    ctx["command"] = " ".join(shlex.quote(x) for x in
                              ["python", "-m", "replicate.results.report"] + list(
                                  argv if argv is not None else sys.argv[1:]))
    paths = write_report(a.paper, a.runs_root, a.out, published, ctx)
    for k, v in paths.items():
        for p in (v if isinstance(v, list) else [v]):
            print(f"{k}: {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
