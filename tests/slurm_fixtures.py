"""Session fixture: a real one-node SLURM cluster on 127.0.0.1 (``slurm/local/start.sh``).

``tests/conftest.py`` imports it (``from tests.slurm_fixtures import *``).

Tests that use it are marked ``@pytest.mark.slurm``.  They run only when
``REPLICATE_SLURM_UP=1`` (``tests/run.sh`` sets it once it started the cluster; by hand:
``bash slurm/local/start.sh && REPLICATE_SLURM_UP=1 python -m pytest -m slurm tests/``), so a
plain ``pytest`` never starts daemons on a shared machine.  Otherwise they are skipped, with the
reason, as they are when not root or when the Debian packages are absent (``bash
slurm/local/start.sh --install`` once, or ``REPLICATE_SLURM_INSTALL=1`` to let the fixture
install them).  A cluster that was already up before the session (e.g. started by CI) is used
and left running; one the fixture started is stopped at the end of the session.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["slurm_cluster", "slurm_log_tails", "tiny_run"]

LOCAL = Path(__file__).resolve().parents[1] / "slurm" / "local"
NEEDED = ("slurmctld", "slurmd", "munged", "sbatch", "srun", "sacct", "slurmdbd", "mariadbd")


def _which(name: str) -> bool:
    return any(shutil.which(name, path=p) for p in (None, "/usr/sbin:/usr/bin:/sbin:/bin"))


def _cluster_up() -> bool:
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "UP" in out.stdout


def slurm_log_tails(n: int = 30) -> str:
    """The daemons' last log lines (print them when a SLURM test fails)."""
    state = Path(os.environ.get("SLURM_LOCAL_STATE", "/tmp/slurm-local/state"))
    parts = []
    for f in sorted((state / "log").glob("*.log")):
        lines = f.read_text(errors="replace").splitlines()[-n:]
        parts.append(f"--- {f}\n" + "\n".join(lines))
    return "\n".join(parts)


@pytest.fixture(scope="session")
def slurm_cluster():
    """Yields the ``local-test`` cluster profile once the cluster answers."""
    if os.environ.get("REPLICATE_SLURM_UP") != "1":
        pytest.skip("SLURM tests run with REPLICATE_SLURM_UP=1 (tests/run.sh sets it after "
                    "starting slurm/local/start.sh)")
    if os.geteuid() != 0:
        pytest.skip("SLURM tests need root (the one-node cluster runs its daemons as root)")
    install = os.environ.get("REPLICATE_SLURM_INSTALL") == "1"
    missing = [b for b in NEEDED if not _which(b)]
    if missing and not install:
        pytest.skip(f"SLURM packages absent ({', '.join(missing)} not found): run "
                    f"`bash slurm/local/start.sh --install` once, or set REPLICATE_SLURM_INSTALL=1")
    was_up = _cluster_up()
    if not was_up:
        cmd = ["bash", str(LOCAL / "start.sh")] + (["--install"] if install else [])
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed (exit {out.returncode}):\n"
                        f"{out.stdout}\n{out.stderr}")
    from replicate.launch import load_profile

    try:
        yield load_profile("local-test")
    finally:
        if not was_up:
            subprocess.run(["bash", str(LOCAL / "stop.sh")], capture_output=True, timeout=120)


def tiny_run(runs_root, seed: int = 0, epochs: int = 6, checkpoint: str = "", name: str = "tiny",
             task: str = "shapes"):
    """A smoke run of the built-in tiny setup (micro ViT, synthetic 32x32 shapes, 2 steps per
    epoch): seconds on one CPU."""
    from replicate.engine import Run
    from tests.helpers import tiny_from_dict

    exp = tiny_from_dict(name, **tiny_run_sections(task, epochs, checkpoint))
    return Run(exp, seed, "smoke", "train", ("val", "test"), str(runs_root))


def tiny_run_sections(task: str = "shapes", epochs: int = 6, checkpoint: str = "") -> dict:
    """What the launch tests change in the tiny experiment (tests/helpers.py): GateVPT, batches
    of 100, 2 steps per epoch, 1 warm-up epoch."""
    from tests.helpers import TINY_GATEVPT

    return dict(method=TINY_GATEVPT, backbone=dict(checkpoint=checkpoint), data=dict(task=task),
                optim=dict(batch_size=100, epochs=epochs, warmup_epochs=1),
                train=dict(max_steps_per_epoch=2))
