"""The two pinned Python environments, and which one a process (or a number) comes from.

=================  ===========================  =======================  ==================
environment        what runs in it              files                    make
=================  ===========================  =======================  ==================
classification     FGVC, VTAB-1k, the demo,     environment.yml,         make install
                   SLURM sweeps (current torch) requirements/base.lock   (.venv)
segmentation       ADE20K through mmseg         environment-seg.yml,     make install-seg
                   (torch 2.1 + mmcv ops)       requirements/seg.lock    (.venv-seg)
=================  ===========================  =======================  ==================

mmcv 2.1.0 (which mmseg 1.2.2 needs, with its compiled ops) builds against torch 2.1 only, and
that torch has no Blackwell kernels; FGVC and VTAB-1k need neither mmcv nor mmseg, so they run on
the current torch.  An environment is recognised by its torch version (the locks pin different
ones); records keep that name with the torch build and its CUDA version, so every reported
number says where it was computed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Environment:
    name: str
    lock: str      # requirements file, relative to the repository
    conda: str     # conda environment file
    conda_name: str
    venv: str      # the make target's virtual environment, relative to the repository
    make: str      # the command that builds it
    runs: str      # what it is for
    python_var: str  # environment variable naming another interpreter of it (conda, ...)
    torch: str     # the lock's torch (kept here too: jobs run from code snapshots without locks;
                   # tests/test_environment.py keeps it equal to the lock)

    def lock_path(self, repo: Path = REPO) -> Path:
        return repo / self.lock

    def python(self, repo: Path = REPO) -> Path:
        """The interpreter of this environment's virtual environment (``make`` layout)."""
        return repo / self.venv / "bin" / "python"


ENVIRONMENTS: Dict[str, Environment] = {
    "classification": Environment(
        "classification", "requirements/base.lock", "environment.yml", "vpt-replicate",
        ".venv", "make install", "FGVC, VTAB-1k, the demo, SLURM sweeps",
        "REPLICATE_CLS_PYTHON", "2.15.0"),
    "segmentation": Environment(
        "segmentation", "requirements/seg.lock", "environment-seg.yml", "vpt-replicate-seg",
        ".venv-seg", "make install-seg", "ADE20K (mmsegmentation)",
        "REPLICATE_SEG_PYTHON", "2.1.2"),
}


def get(name: str) -> Environment:
    if name not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {name!r}; choose one of "
                         f"{', '.join(ENVIRONMENTS)}")
    return ENVIRONMENTS[name]


def lock_pins(name: str, repo: Path = REPO) -> Dict[str, str]:
    """``{distribution (lower case): version}`` of an environment's lock file."""
    pins: Dict[str, str] = {}
    path = get(name).lock_path(repo)
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def which(torch_version: str) -> Optional[str]:
    """The environment whose lock pins this torch (``2.15.0+cu132`` matches ``2.15.0``), or
    None for a torch neither lock pins."""
    base = str(torch_version).split("+")[0]
    for name, env in ENVIRONMENTS.items():
        if env.torch == base:
            return name
    return None


def current() -> Dict[str, str]:
    """This process: ``{"environment", "torch", "cuda"}`` (cuda: the CUDA version torch was
    built with, ``none`` for a CPU-only build; not whether a GPU is visible)."""
    import torch

    return {"environment": which(torch.__version__) or "unpinned",
            "torch": torch.__version__, "cuda": torch.version.cuda or "none"}


def label(env: Dict[str, str]) -> str:
    """``classification (torch 2.15.0+cu132, CUDA 13.2)`` from a record's ``env`` dict."""
    name = env.get("environment") or which(str(env.get("torch", ""))) or "unpinned"
    torch_v = env.get("torch", "?")
    cuda = env.get("cuda")
    if not cuda:  # records from before the cuda key: the wheel's local version names the build
        m = re.search(r"\+cu(\d+)(\d)$", str(torch_v))
        cuda = f"{m.group(1)}.{m.group(2)}" if m else None
    return f"{name} (torch {torch_v}, " + (f"CUDA {cuda})" if cuda else "CUDA build not recorded)")


def label_from_text(text: str) -> str:
    """:func:`label` of a record's environment as ``results.collect.environment_string``
    writes it (``cuda 13.2, environment classification, ..., torch 2.15.0+cu132``)."""
    env = dict(m.groups() for m in re.finditer(r"(?:^|, )([a-z_]+) ([^,]+)", str(text or "")))
    return label(env) if env.get("torch") else "unknown"


def of_records(run_dirs) -> Dict[str, int]:
    """``{label: number of runs}`` over the finished runs among ``run_dirs`` (their
    record.json), so a plan or report says where each number was computed."""
    out: Dict[str, int] = {}
    for d in run_dirs:
        try:
            rec = json.loads((Path(d) / "record.json").read_text())
        except (OSError, ValueError):
            continue
        env = rec.get("env") if isinstance(rec, dict) else None
        key = label(env) if isinstance(env, dict) and env.get("torch") else "unknown"
        out[key] = out.get(key, 0) + 1
    return out


# ------------------------------------------------------------------ another environment
def probe(python: Path, timeout_s: float = 120) -> Tuple[Optional[dict], str]:
    """Run ``python`` and report its torch/CUDA build and the segmentation packages
    (``(facts, "")``), or ``(None, why not)``."""
    code = ("import json, importlib.util as u, torch; print(json.dumps({'torch': torch.__version__,"
            " 'cuda': torch.version.cuda or 'none', 'mmseg': u.find_spec('mmseg') is not None,"
            " 'mmcv': u.find_spec('mmcv') is not None}))")
    if not Path(python).exists():
        return None, f"{python} does not exist"
    try:
        res = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                             timeout=timeout_s, env={**os.environ, "PYTHONPATH": ""})
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{python} does not run: {e}"
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"{python} cannot import torch: {last}"
    try:
        return json.loads(res.stdout.strip().splitlines()[-1]), ""
    except (ValueError, IndexError):
        return None, f"{python} printed no facts: {res.stdout[-200:]!r}"


def interpreter(name: str, repo: Path = REPO) -> Path:
    """The interpreter of environment ``name`` on this machine: ``$REPLICATE_CLS_PYTHON`` /
    ``$REPLICATE_SEG_PYTHON`` when set (a conda environment, say), else the ``make`` venv, else
    the running python when it is that environment (the venv path, missing, otherwise)."""
    env = get(name)
    if os.environ.get(env.python_var):
        return Path(os.environ[env.python_var])
    venv = env.python(repo)
    if not venv.exists() and which(_running_torch()) == name:
        return Path(sys.executable)
    return venv


def check(name: str, python: Optional[Path] = None, repo: Path = REPO) -> Tuple[bool, str]:
    """Whether environment ``name`` exists and matches its lock's torch (and, for
    segmentation, has mmcv and mmseg).  ``python`` defaults to :func:`interpreter`.  The
    message names the fix."""
    env = get(name)
    want = env.torch
    python = Path(python) if python is not None else interpreter(name, repo)
    facts, why = probe(python)
    fix = (f"`{env.make}` (or `conda env create -f {env.conda}` and export "
           f"{env.python_var}=<its python>) for {env.runs}")
    if facts is None:
        return False, f"missing: {why}; run {fix}"
    have = facts["torch"].split("+")[0]
    if have != want:
        return False, (f"{python}: torch {facts['torch']} but {env.lock} pins {want}; "
                       f"rebuild: rm -rf {env.venv} && {env.make}")
    if name == "segmentation" and not (facts["mmseg"] and facts["mmcv"]):
        return False, f"{python}: torch {facts['torch']} but no mmcv/mmseg; run {fix}"
    return True, (f"{python}: torch {facts['torch']} (CUDA {facts['cuda']} build) for "
                  f"{env.runs}")


def doctor_rows() -> List[Tuple[str, bool, str]]:
    """``make doctor``'s rows: each environment present and matching its lock, or the one that
    is missing with the command that creates it."""
    return [(f"{name} environment", *check(name)) for name in ENVIRONMENTS]


def _running_torch() -> str:
    try:
        import torch
        return torch.__version__
    except ImportError:
        return ""


# ------------------------------------------------------------------ jobs
class EnvironmentMissing(RuntimeError):
    """A job needs an environment that does not exist here; the message says how to make it."""


def job_python(name: str, profile: Optional[dict] = None,
               repo: Path = REPO) -> Tuple[str, List[str]]:
    """``(python command, setup lines)`` that start a job of environment ``name``.

    From the cluster profile's ``environments.<name>`` (``setup``: shell lines such as
    ``conda activate vpt-replicate-seg``; ``python``: the command).  Unset python: ``python``
    when setup lines are given (the activated environment's); otherwise, for classification
    the python that submits, for segmentation the submitting python if it has mmseg, else the
    ``make install-seg`` venv."""
    import importlib.util

    env = get(name)
    spec = ((profile or {}).get("environments") or {}).get(name) or {}
    setup = list(spec.get("setup") or [])
    if spec.get("python"):
        return str(spec["python"]), setup
    if setup:
        return "python", setup
    if name == "classification" or importlib.util.find_spec("mmseg") is not None:
        return sys.executable, setup
    venv = env.python(repo)
    if venv.exists():
        return str(venv), setup
    raise EnvironmentMissing(
        f"{env.runs} jobs run in the {name} environment, and this python ({sys.executable}) "
        f"has no mmseg and {venv} does not exist: run `{env.make}`, or name the environment's "
        f"activation under 'environments: {name}:' in the cluster profile "
        f"(slurm/clusters/default.yaml documents it)")
