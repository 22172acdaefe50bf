"""Same numbers in both environments: the GateVPT smoke configs (linear probe, VPT-deep,
GateVPT) trained on the CPU with seed 42 under the classification environment (current torch,
.venv) and the segmentation environment (torch 2.1, .venv-seg) agree within the tolerances
below, and each record names the environment, torch build and CUDA version it came from.

Skips, with the reason, when either environment is missing (``make install`` /
``make install-seg``; REPLICATE_CLS_PYTHON / REPLICATE_SEG_PYTHON point at other interpreters).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from replicate import environments

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [f"papers/gatevpt/configs/smoke/digits/{m}.py" for m in ("linear", "vpt_deep", "gatevpt")]
#: .venv / .venv-seg, or $REPLICATE_CLS_PYTHON / $REPLICATE_SEG_PYTHON
PYTHONS = {name: str(environments.interpreter(name, ROOT)) for name in environments.ENVIRONMENTS}

# Tolerances.  Initial weights and batches come from the same seeded generators in both torch
# versions, so they must agree to float64 summation noise (1e-9 relative).  One forward pass
# goes through different CPU kernels (oneDNN/BLAS builds of each torch): float32 rounding,
# measured ~1e-9 relative on the summed logits; 1e-5 relative per logit (atol 1e-5 for logits
# near 0) allows float32 accumulation-order differences and nothing else.  After training, the
# head-only linear probe (convex, cached features) agrees to 1e-4 relative loss.  The prompt
# methods train the tiny ViT at lr 0.1 where the loss first climbs to ~12 before it falls: that
# amplifies the 1e-9 forward rounding to ~0.1% in the final test loss and at most 2 of the 797
# test images (0.25 top-1 points) in the measured runs; the bounds are 1% relative loss and 1.0
# top-1 point (8 images), well below any difference a code or data change makes.
INIT_RTOL = 1e-9
LOGIT_RTOL, LOGIT_ATOL = 1e-5, 1e-5
LINEAR_LOSS_RTOL = 1e-4
PROMPT_LOSS_RTOL = 1e-2
TOP1_ATOL = 1.0


def _check_python(name: str) -> str:
    py = PYTHONS[name]
    env = environments.get(name)
    facts, why = environments.probe(Path(py))
    if facts is None:
        pytest.skip(f"{name} environment unavailable ({why}): `{env.make}` creates it")
    if facts["torch"].split("+")[0] != env.torch:
        pytest.skip(f"{py} has torch {facts['torch']}, not the {name} lock's {env.torch}: "
                    f"`rm -rf {env.venv} && {env.make}`")
    return py


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    pys = {name: _check_python(name) for name in PYTHONS}
    procs = {}
    for name, py in pys.items():  # both at once: one thread each on the 2 cores
        out = tmp_path_factory.mktemp(f"runs-{name}")
        procs[name] = subprocess.Popen(
            [py, str(ROOT / "tests" / "cross_env_runs.py"), str(out)] + CONFIGS, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    results = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=1500)
        assert p.returncode == 0, f"{name} ({pys[name]}) failed:\n{stderr[-3000:]}"
        results[name] = json.loads(stdout.strip().splitlines()[-1])
    return results


def test_records_name_their_environment(both):
    for name, res in both.items():
        for cfg in CONFIGS:
            env = res[cfg]["env"]
            assert env["environment"] == name, (cfg, env)
            assert env["torch"].split("+")[0] == environments.get(name).torch
            assert env["cuda"] not in ("", None), env
            assert environments.label(env).startswith(f"{name} (torch {env['torch']}, CUDA ")


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: Path(c).stem)
def test_same_start_in_both_environments(both, cfg):
    a, b = both["classification"][cfg], both["segmentation"][cfg]
    assert a["init_sum"] == pytest.approx(b["init_sum"], rel=INIT_RTOL), "initial weights differ"
    assert a["batch_sum"] == pytest.approx(b["batch_sum"], rel=INIT_RTOL), "first batch differs"
    assert a["logits"] == pytest.approx(b["logits"], rel=LOGIT_RTOL, abs=LOGIT_ATOL)
    assert a["logits_abs_sum"] == pytest.approx(b["logits_abs_sum"], rel=LOGIT_RTOL)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: Path(c).stem)
def test_same_metrics_in_both_environments(both, cfg):
    a, b = both["classification"][cfg]["metrics"], both["segmentation"][cfg]["metrics"]
    assert a["test_n"] == b["test_n"]
    rtol = LINEAR_LOSS_RTOL if cfg.endswith("linear.py") else PROMPT_LOSS_RTOL
    assert a["test_loss"] == pytest.approx(b["test_loss"], rel=rtol), (a, b)
    assert abs(a["test_top1"] - b["test_top1"]) <= TOP1_ATOL, (a, b)
    print(f"{Path(cfg).stem}: top1 {a['test_top1']:.2f} vs {b['test_top1']:.2f}, "
          f"loss {a['test_loss']:.5f} vs {b['test_loss']:.5f} "
          f"(torch {both['classification'][cfg]['env']['torch']} vs "
          f"{both['segmentation'][cfg]['env']['torch']})", file=sys.stderr)
