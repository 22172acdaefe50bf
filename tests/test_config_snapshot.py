"""Snapshot of every committed paper config, resolved: restructuring the config files (moving
reasons into ``_base_`` files, dropping re-listed blocks) must not change what an experiment is.

"Unchanged" means, per config (ADE20K segmentation configs excluded: they need mmseg):

* ``values``  -- sha256 of the resolved ``Experiment.to_dict()`` without ``source`` and
  ``assumed``: every value the engine sees, plus name, paper, cell and seeds;
* ``assumed`` -- sha256 of the resolved ``assumed`` mapping (key -> reason): the same keys are
  explained with the same reasons, wherever in the ``_base_`` chain they are written;
* ``config_hash`` -- ``Experiment.config_hash()``, which names the run directory;
* the set of config files itself (none lost, none added without a new golden).

A change that an issue asks for (a value fixed, a config added) regenerates the golden with

    REGEN_GOLDEN=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_config_snapshot.py

and the diff of tests/golden/resolved_configs.json is reviewed with the change.

Changes since the golden was first made (at the commit before the config restructuring):

* GateVPT's search cells (``papers/gatevpt/configs/search/*/*/gatevpt/*.py``) no longer write
  Table 5's lr, which the protocol's grid replaces in every search run: 39 of the 48 change
  ``optim.lr`` (to the default, 0.1) and so ``values`` and ``config_hash``; their grid and
  final runs, whose lr the grid and the selection set, are the same runs as before.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import pytest

from replicate import config

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "resolved_configs.json"


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def config_files(root: Path = ROOT) -> list:
    """Committed experiment configs: papers/*/configs/**/*.py, bases and ADE20K excepted."""
    return sorted(p for p in (root / "papers").rglob("configs/**/*.py")
                  if "_base_" not in p.parts and "ade20k" not in p.parts)


def snapshot(root: Path = ROOT) -> Dict[str, dict]:
    """Config path (relative to ``root``) -> the hashes described in the module docstring."""
    return {str(p.relative_to(root)): snapshot_one(p) for p in config_files(root)}


@pytest.fixture(scope="module")
def current() -> Dict[str, dict]:
    snap = snapshot()
    if os.environ.get("REGEN_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")
    return snap


@pytest.fixture(scope="module")
def golden() -> Dict[str, dict]:
    return json.loads(GOLDEN.read_text())


def test_same_config_files(current, golden):
    lost, added = sorted(set(golden) - set(current)), sorted(set(current) - set(golden))
    assert not lost and not added, (
        f"configs lost: {lost[:10]}; configs added: {added[:10]} (if intended, regenerate the "
        "golden: see this module's docstring)")


@pytest.mark.parametrize("what", ["values_sha256", "assumed_sha256", "config_hash"])
def test_resolved_configs_unchanged(current, golden, what):
    changed = sorted(k for k in set(golden) & set(current) if golden[k][what] != current[k][what])
    assert not changed, (f"{len(changed)} config(s) resolve differently ({what}), e.g. "
                         f"{changed[:5]}; if intended, regenerate the golden (module docstring)")


def test_snapshot_detects_a_changed_value(tmp_path):
    """The comparison can fail: a config whose lr differs from its base hashes differently."""
    src = next(p for p in config_files() if "smoke" in p.parts)
    base = snapshot_one(src)
    changed = snapshot_one(src, {"optim.lr": config.load(src).optim.lr * 2})
    assert base["values_sha256"] != changed["values_sha256"]
    assert base["config_hash"] != changed["config_hash"]
    assert base["assumed_sha256"] == changed["assumed_sha256"]


def snapshot_one(path: Path, overrides: Optional[Mapping[str, Any]] = None) -> dict:
    """The three hashes of one config (see the module docstring)."""
    exp = config.load(path, overrides=overrides)
    d = exp.to_dict()
    d.pop("source", None)
    assumed = d.pop("assumed", {})
    return {"values_sha256": _sha(d), "assumed_sha256": _sha(assumed),
            "config_hash": exp.config_hash()}
