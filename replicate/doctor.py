"""``make doctor``: what is installed, what is missing, and the fix for each problem.

Each verdict is checked, not assumed: datasets against the split manifests' counts and ids,
SLURM by asking the controller (``sinfo``, short timeout), RUNS_ROOT by the write permission
of its nearest existing folder (the harness creates it)."""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "seg.lock"

Check = Tuple[str, bool, str]  # (what, ok, detail or fix)


def _pinned() -> dict:
    """The lock of the environment this python is (by its torch; classification if neither):
    base.lock and seg.lock pin different torch versions (replicate/environments.py)."""
    from . import environments

    import torch
    return environments.lock_pins(environments.which(torch.__version__) or "classification")


def check_environments() -> List[Check]:
    """Both pinned environments (classification .venv, segmentation .venv-seg): present and
    matching their locks, or which one is missing and the command that makes it."""
    from . import environments
    return environments.doctor_rows()


def check_versions() -> List[Check]:
    from importlib import metadata
    out = []
    pins = _pinned()
    for dist in ("torch", "torchvision", "timm", "mmengine", "numpy", "pandas", "submitit",
                 "mmcv", "mmsegmentation"):
        try:
            have = metadata.version(dist)
        except metadata.PackageNotFoundError:
            optional = dist in ("mmcv", "mmsegmentation")
            out.append((dist, optional, "not installed" + (
                " (only for ADE20K: `make install-seg`)" if optional else ": run `make install`")))
            continue
        want = pins.get(dist)
        ok = want is None or have.split("+")[0] == want
        out.append((dist, ok, have + ("" if ok else f" but the lock pins {want}: run `make install`")))
    return out


def check_cuda() -> List[Check]:
    import torch
    if not torch.cuda.is_available():
        return [("CUDA", True, "no GPU visible: CPU only (fine for tests and the demo)")]
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    bf16 = torch.cuda.is_bf16_supported()
    return [("CUDA", True, f"{torch.version.cuda}; {', '.join(names)}; bf16 {'yes' if bf16 else 'NO: set train.precision=fp32'}")]


def check_mmcv_ops() -> List[Check]:
    try:
        importlib.import_module("mmcv")
    except ImportError:
        return [("mmcv ops", True, "mmcv not installed (only needed for ADE20K: `make install-seg`)")]
    try:
        importlib.import_module("mmcv._ext")
        importlib.import_module("mmseg")
        return [("mmcv ops", True, "mmcv._ext and mmseg import")]
    except ImportError as e:
        return [("mmcv ops", False, f"{e}: mmcv without compiled ops (mmcv-lite?) cannot run "
                 "mmseg; `pip uninstall mmcv-lite mmcv` then `make install-seg`")]


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def writable_problem(path: Path) -> Optional[str]:
    """Why the harness could not create/write files in folder ``path`` (None: it can).  A
    missing folder is fine when its nearest existing ancestor is a writable folder, since the
    harness creates it (``mkdir -p``)."""
    path = Path(path)
    base = nearest_existing(path)
    if not base.is_dir():
        return f"{base} is a file, not a folder"
    if not os.access(base, os.W_OK | os.X_OK):
        return (f"{base} is not writable for this user" +
                ("" if base == path else f" (nearest existing folder of {path})"))
    return None


def check_roots() -> List[Check]:
    out = []
    for var, what in (("DATA_ROOT", "datasets (docs/data.md)"),
                      ("CKPT_ROOT", "pre-trained checkpoints (python -m replicate backbones)")):
        val = os.environ.get(var)
        if not val:
            out.append((var, False, f"not set: export {var}=/path for {what}"))
        elif not Path(val).is_dir():
            out.append((var, False, f"{val} does not exist: create it or fix {var}"))
        else:
            out.append((var, True, val))
    # RUNS_ROOT is created on first use: what matters is that it can be
    val = os.environ.get("RUNS_ROOT")
    runs = Path(val) if val else REPO / "runs"
    where = f"{runs}" + ("" if val else " (RUNS_ROOT not set: the default ./runs)")
    problem = writable_problem(runs)
    if problem:
        out.append(("RUNS_ROOT", False, f"{where}: {problem}: fix the permissions or export "
                    f"RUNS_ROOT=/a/writable/folder"))
    elif runs.is_dir():
        out.append(("RUNS_ROOT", True, f"{where} (writable)"))
    else:
        out.append(("RUNS_ROOT", True, f"{where} does not exist yet; created on first run "
                    f"({nearest_existing(runs)} is writable)"))
    return out


def check_data() -> List[Check]:
    """Every dataset found under DATA_ROOT against the committed split manifests (counts,
    ordered ids, labels; no image decoding: ``python -m replicate data verify`` does that).
    A DATA_ROOT without any dataset is a problem, not a pass."""
    root = os.environ.get("DATA_ROOT")
    if not root or not Path(root).is_dir():
        return []  # check_roots says what to do
    from .data import verify

    findings = verify.verify(root, vtab_content=False, fgvc_content=False, write=False)
    rows: List[Check] = []
    by_subject: dict = {}
    for f in findings:
        by_subject.setdefault(f.subject.split(" ")[0], []).append(f)
    missing = []
    for subject, fs in by_subject.items():
        # wrong counts first: the headline of a copy that differs from the manifests
        errors = sorted((f for f in fs if f.level == "error"),
                        key=lambda f: "wrong count" not in f.message)
        if errors:
            rows.append((f"data {subject}", False, "; ".join(
                f.message + (f" (fix: {f.fix})" if f.fix else "") for f in errors[:3])
                + (f"; +{len(errors) - 3} more" if len(errors) > 3 else "")))
        elif all(f.level == "skip" for f in fs):
            missing.append(subject)
        else:
            warn = [f.message for f in fs if f.level == "warning"]
            rows.append((f"data {subject}", True, "matches the manifests (counts, ids, labels)"
                         + (f"; warning: {'; '.join(warn)}" if warn else "")))
    if not rows:
        return [("data", False, f"no dataset found under DATA_ROOT={root}: download/export them "
                 f"as docs/data.md says, then `python -m replicate data verify`")]
    if missing:
        rows.append(("data (absent)", True, f"not found under {root}: {', '.join(missing)} "
                     f"(needed only for their configs; docs/data.md)"))
    return rows


def check_checkpoints() -> List[Check]:
    from . import backbones
    root = os.environ.get("CKPT_ROOT")
    out = []
    for name in backbones.registered():
        e = backbones.get(name)
        if e.tiny or e.extra.get("micro"):  # micro: made locally in their own cache
            continue
        if not root:
            continue
        path = Path(backbones.checkpoint_in(root, e))  # default_file, or a name it also has
        if not path.is_file():
            also = (f" (saved as {' or '.join(e.other_files)} it is found too)"
                    if e.other_files else "")
            out.append((f"checkpoint {name}", False, f"{path} missing: download {e.url}{also}"))
            continue
        probe = getattr(importlib.import_module(e.adapter.__module__), "check_checkpoint", None)
        if probe is not None:
            ok, msg = probe(str(path))
            out.append((f"checkpoint {name}", ok, msg))
            continue
        try:
            from .backbones import converters
            converters.load_into(e.build(), str(path), e)
            out.append((f"checkpoint {name}", True, f"{path} loads (strict keys)"))
        except Exception as err:
            out.append((f"checkpoint {name}", False, str(err)))
    if not root:
        out.append(("checkpoints", False, "CKPT_ROOT not set: export CKPT_ROOT=/dir with the files "
                    "listed by `python -m replicate backbones`"))
    return out


#: seconds to wait for ``sinfo``: a live controller answers in well under a second
SINFO_TIMEOUT_S = 10


def check_slurm() -> List[Check]:
    """sbatch on PATH is not enough: a controller must answer ``sinfo``."""
    sbatch = shutil.which("sbatch")
    wants_slurm = os.environ.get("EXECUTOR") == "slurm"
    if not sbatch:
        return [("SLURM", not wants_slurm, "no sbatch on PATH" + (
            " but EXECUTOR=slurm: load your site's SLURM module or use EXECUTOR=local"
            if wants_slurm else ": use EXECUTOR=local (or slurm/local/start.sh --install "
            "for a one-node test cluster)"))]
    sinfo = shutil.which("sinfo")
    if not sinfo:
        return [("SLURM", False, f"sbatch at {sbatch} but no sinfo on PATH: cannot ask the "
                 "controller; fix the SLURM installation or use EXECUTOR=local")]
    try:
        res = subprocess.run([sinfo, "--noheader", "--summarize"], capture_output=True,
                             text=True, timeout=SINFO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return [("SLURM", False, f"sinfo did not answer within {SINFO_TIMEOUT_S} s: the "
                 "controller (slurmctld) is down or unreachable; start it / ask your admins, "
                 "or use EXECUTOR=local")]
    except OSError as e:
        return [("SLURM", False, f"{sinfo} cannot run ({e}): fix the SLURM installation or use "
                 "EXECUTOR=local")]
    if res.returncode != 0:
        why = " ".join((res.stderr or res.stdout).split())[:200] or f"exit {res.returncode}"
        return [("SLURM", False, f"sbatch at {sbatch} but no controller answers (sinfo: {why}): "
                 "start slurmctld (one-node cluster: slurm/local/start.sh) / ask your admins, "
                 "or use EXECUTOR=local")]
    parts = " ".join(res.stdout.split())
    return [("SLURM", True, f"controller answers (sinfo: {parts[:120]}); cluster profiles in "
             f"slurm/clusters/")]


def doctor(verbose: bool = False) -> int:
    sections = [("environments", check_environments), ("versions", check_versions), ("CUDA", check_cuda), ("mmcv", check_mmcv_ops),
                ("roots", check_roots), ("data", check_data), ("checkpoints", check_checkpoints),
                ("SLURM", check_slurm)]
    problems = 0
    for title, fn in sections:
        try:
            rows = fn()
        except Exception as e:  # a broken check must not hide the others
            rows = [(title, False, f"check crashed: {type(e).__name__}: {e}")]
        for what, ok, detail in rows:
            problems += not ok
            print(f"[{'ok' if ok else 'FIX'}] {what:40s} {detail}")
    print(f"\n{problems} problem(s)" + (": each line marked FIX says what to do" if problems else ""))
    return 1 if problems else 0
