"""Protocol stages (pycls-style setup -> launch -> collect -> analyze).

Modes:
* ``pinned`` (default for reproduce): each config under ``papers/<p>/configs/pinned`` is one
  published cell with the paper's own hyper-parameters; it becomes one run per protocol seed,
  trained on ``final_train`` (VTAB: train800val200, FGVC: train, as the official train.py),
  evaluated on ``report``.
* ``search``: each config under ``configs/search`` spans the protocol's lr x wd grid on
  ``search_train``/``search_eval`` (one seed); ``select`` picks the best pair per config from
  the *val* records only; ``final`` then trains the selected pair with the protocol's seeds.

Every stage is idempotent: runs are identified by a hash of their resolved config and seed, so
re-planning finds the same run directories, skips finished runs and resumes unfinished ones.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from . import config as cfg_mod
from .config import Experiment
from .runs import Run, read_record, run_state
from .protocol import Protocol, get as get_protocol

REPO = Path(__file__).resolve().parents[1]


def papers_root() -> Path:
    """papers/ of this checkout; REPLICATE_PAPERS points elsewhere (tests, private papers)."""
    from .papers import papers_root as root  # one definition, torch-free (replicate/papers.py)
    return root()


STAGES = ("pinned", "search", "final", "smoke")
#: mode -> the stages it runs, in order.  'smoke' plans configs/smoke like pinned (tiny model,
#: built-in data) and never counts as a reproduction
MODE_STAGES = {"pinned": ("pinned",), "search": ("search", "final"), "smoke": ("smoke",)}


class SelectionIncomplete(RuntimeError):
    """Selection needs every grid run of a config to be finished."""


class AllDiverged(SelectionIncomplete):
    """Every grid run of a config diverged: there is nothing to select."""


@dataclass(frozen=True)
class Selection:
    experiment: str
    lr: float
    wd: float
    val_top1: float
    grid_size: int
    #: the paper's own choice for this cell when known (GateVPT Table 5), for the report
    paper_lr: Optional[float] = None
    #: grid points skipped because their loss turned non-finite ("lr=.. wd=..: why")
    skipped: Tuple[str, ...] = ()


def config_files(paper: str, mode: str, root: Optional[Path] = None,
                 select: Sequence[str] = ()) -> List[Path]:
    """Config files of ``paper`` for ``mode`` (pinned | search), filtered by glob patterns
    matched against the path relative to ``configs/<mode>`` (e.g. ``vtab1k/mae_vitb16/*``)."""
    base = Path(root or papers_root()) / paper / "configs" / mode
    if not base.is_dir():
        raise FileNotFoundError(f"no {mode} configs for paper '{paper}' under {base}")
    files = sorted(p for p in base.rglob("*.py") if "_base_" not in p.parts)
    if select:
        files = [p for p in files
                 if any(fnmatch.fnmatch(str(p.relative_to(base)), pat) for pat in select)]
    return files


def load_experiments(files: Iterable[Path], overrides: Optional[dict] = None) -> List[Experiment]:
    return [cfg_mod.load(p, overrides) for p in files]


def seeds_of(exp: Experiment, proto: Protocol) -> Tuple[int, ...]:
    return tuple(exp.seeds) if exp.seeds else proto.seeds


def final_like_experiment(exp: Experiment) -> Experiment:
    """``exp`` as final/pinned runs train it (``python -m replicate run`` uses it too, so a
    run started by hand has the planned run's id): final runs evaluate only the reported
    split, once, at the end (VPT evaluates it every epoch for logging only; the reported
    number is the last epoch's)."""
    return exp.replace(**{"train.eval_every": 0})


def _final_like(exp: Experiment, proto: Protocol, stage: str, runs_root: str,
                tags: Optional[dict] = None) -> List[Run]:
    exp = final_like_experiment(exp)
    return [Run(exp, s, stage, proto.final_train, (proto.report,), runs_root, dict(tags or {}))
            for s in seeds_of(exp, proto)]


def plan_pinned(exps: Sequence[Experiment], runs_root: str, stage: str = "pinned") -> List[Run]:
    return [r for e in exps for r in _final_like(e, get_protocol(e.protocol), stage, runs_root,
                                                 {"config": e.name})]


def grid_runs(exp: Experiment, runs_root: str) -> List[Run]:
    proto = get_protocol(exp.protocol)
    runs = []
    for lr in proto.lr_grid:
        for wd in proto.wd_grid:
            e = exp.replace(**{"optim.lr": float(lr), "optim.weight_decay": float(wd)})
            runs.append(Run(e, proto.seeds[0], "search", proto.search_train, (proto.search_eval,),
                            runs_root, {"config": exp.name, "lr": lr, "wd": wd}))
    return runs


def plan_search(exps: Sequence[Experiment], runs_root: str) -> List[Run]:
    return [r for e in exps for r in grid_runs(e, runs_root)]


def select(exp: Experiment, runs_root: str) -> Selection:
    """Best (lr, wd) of ``exp``'s grid by the protocol's rule, reading only search records.

    Rule ``last_epoch_val_top1``: the val top-1 after the last epoch (VPT tune_vtab.py);
    ties go to the smaller lr, then the larger wd.  The search runs never evaluate the report
    split, so the test set cannot leak into the choice.  Grid runs that diverged (a
    ``diverged`` record: non-finite loss) are skipped, as the official tune scripts skip runs
    that raised; unfinished runs block the selection.
    """
    proto = get_protocol(exp.protocol)
    if proto.selection != "last_epoch_val_top1" or proto.tie_break != "smaller_lr":
        raise ValueError(f"selection rule {proto.selection}/{proto.tie_break} not implemented")
    key = f"{proto.search_eval}_top1"
    scored, missing, skipped = [], [], []
    for run in grid_runs(exp, runs_root):
        rec = read_record(run.run_dir)
        if rec is None:
            missing.append(run.run_id)
        elif rec.get("status") == "diverged":
            why = (rec.get("diverged") or {}).get("reason", "non-finite training loss")
            skipped.append(f"lr={rec['lr']:g} wd={rec['wd']:g}: {why}")
        else:
            scored.append((rec["metrics"][key], -rec["lr"], rec["wd"], rec))
    n = len(scored) + len(missing) + len(skipped)
    if missing:
        raise SelectionIncomplete(f"{exp.name}: {len(missing)} of {n} grid runs not finished; "
                                  "run the search stage first")
    if not scored:
        raise AllDiverged(f"{exp.name}: all {n} grid runs diverged (non-finite loss); nothing "
                          f"to select: check the data and the grid ({skipped[0]})")
    best = max(scored, key=lambda t: (t[0], t[1], t[2]))
    rec = best[3]
    return Selection(exp.name, rec["lr"], rec["wd"], best[0], len(scored),
                     paper_lr=_paper_lr(exp), skipped=tuple(skipped))


def _paper_lr(exp: Experiment) -> Optional[float]:
    """The lr the paper selected for this cell: the lr of its pinned twin (same paper, same
    cell: ``configs/search/<b>/<bk>/<method>/<t>.py`` -> ``configs/pinned/<b>/<bk>/<t>.py``)
    when that twin trains the same method (e.g. GateVPT's Table 5 cells); otherwise None."""
    if not exp.source or "/search/" not in exp.source:
        return None
    pinned = Path(exp.source.replace("/search/", "/pinned/"))
    pinned = pinned.parent.parent / pinned.name
    if not pinned.is_file():
        return None
    twin = cfg_mod.load(pinned)
    return twin.optim.lr if twin.method.type == exp.method.type else None


def plan_final(exps: Sequence[Experiment], runs_root: str) -> Tuple[List[Run], List[str]]:
    """Final runs for every config whose grid is complete; the rest are reported as pending."""
    runs, pending = [], []
    for e in exps:
        try:
            sel = select(e, runs_root)
        except SelectionIncomplete as err:
            pending.append(str(err))
            continue
        chosen = e.replace(**{"optim.lr": sel.lr, "optim.weight_decay": sel.wd})
        runs += _final_like(chosen, get_protocol(e.protocol), "final", runs_root,
                            {"config": e.name, "selected_lr": sel.lr, "selected_wd": sel.wd,
                             "val_top1": sel.val_top1, "paper_lr": sel.paper_lr,
                             "skipped_diverged": list(sel.skipped)})
    return runs, pending


def summarize(runs: Sequence[Run]) -> Dict[str, int]:
    counts = {"done": 0, "failed": 0, "started": 0, "new": 0}
    for r in runs:
        counts[run_state(r.run_dir)] += 1
    return counts


def todo(runs: Sequence[Run]) -> List[Run]:
    """Runs without a record (new, started or failed: they are retried / resumed)."""
    return [r for r in runs if run_state(r.run_dir) != "done"]
