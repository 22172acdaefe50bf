"""Cluster profiles, executor parameters, packing, and importing without SLURM (fast, no jobs)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from submitit.slurm.slurm import _make_sbatch_string

from replicate import launch
from replicate.launch import LaunchError, ProfileError, load_profile

REPO = Path(__file__).resolve().parents[1]


def test_shipped_profiles_load_and_default_documents_every_key():
    names = launch.available_profiles()
    assert {"default", "local-test", "example-site"} <= set(names)
    text = (launch.clusters_dir() / "default.yaml").read_text()
    for key in launch.PROFILE_KEYS:  # every key set (and commented) in default.yaml
        assert f"\n{key}:" in text, key
    for n in names:
        p = load_profile(n)
        assert set(launch.PROFILE_KEYS) <= set(p) and p["name"] == n
    test = load_profile("local-test")
    assert test["partition"] == "debug" and test["cpus_per_task"] <= 2 and test["gpus_per_job"] == 0
    # keys a site profile leaves out come from default.yaml
    site = load_profile("example-site")
    assert site["additional"] == {"qos": "normal"}


def test_unknown_profile_lists_available():
    with pytest.raises(ProfileError) as e:
        load_profile("no-such-site")
    msg = str(e.value)
    assert "no-such-site" in msg and "default" in msg and "local-test" in msg


def _write(d: Path, name: str, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "default.yaml").write_text((launch.clusters_dir() / "default.yaml").read_text())
    p = d / f"{name}.yaml"
    p.write_text(text)
    return p


def test_unknown_key_wrong_type_and_bad_yaml_name_the_file(tmp_path):
    p = _write(tmp_path, "typo", "partition: gpu\ngpus: 2\n")
    with pytest.raises(ProfileError, match=r"typo\.yaml: unknown key\(s\) 'gpus'"):
        load_profile("typo", directory=tmp_path)
    _write(tmp_path, "badtype", "cpus_per_task: many\n")
    with pytest.raises(ProfileError, match=r"badtype\.yaml: 'cpus_per_task' must be int"):
        load_profile("badtype", directory=tmp_path)
    _write(tmp_path, "neg", "array_parallelism: 0\n")
    with pytest.raises(ProfileError, match="array_parallelism' must be >= 1"):
        load_profile("neg", directory=tmp_path)
    _write(tmp_path, "broken", "partition: [gpu\n")
    with pytest.raises(ProfileError, match=r"broken\.yaml: not valid YAML"):
        load_profile("broken", directory=tmp_path)
    with pytest.raises(ProfileError, match="not found"):
        load_profile(str(tmp_path / "absent.yaml"))
    # by path: merged with the default.yaml next to it
    ok = load_profile(str(_write(tmp_path, "ok", "partition: big\n")))
    assert ok["partition"] == "big" and ok["mem_gb"] == load_profile("default")["mem_gb"]
    assert p.is_file()


def test_slurm_parameters_render_to_sbatch_flags(tmp_path):
    prof = load_profile("example-site")
    params = launch.slurm_parameters(prof, "replicate-search", setup=["echo hi"])
    text = _make_sbatch_string(command="python x", folder=tmp_path, map_count=100, **params)
    for flag in ("--partition=gpu", "--account=my-project", "--gpus-per-node=1",
                 "--cpus-per-task=10", "--mem=64GB", "--time=360", "--signal=USR2@240",
                 "--array=0-99%64", "--job-name=replicate-search", "--qos=normal",
                 "--nodes=1", "--ntasks-per-node=1"):
        assert f"#SBATCH {flag}" in text, flag
    assert "--constraint='a100|h100'" in text
    assert text.index("module load cuda/12.1") < text.index("echo hi") < text.index("srun")
    cpu = launch.slurm_parameters(load_profile("local-test"), "t")
    assert "gpus_per_node" not in cpu and "account" not in cpu  # nothing sent for 0 / null


def test_make_executor_is_explicit(tmp_path, monkeypatch):
    with pytest.raises(LaunchError, match="unknown executor kind 'auto'"):
        launch.make_executor("auto", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch/srun
    with pytest.raises(LaunchError, match="sbatch/srun are not on PATH"):
        launch.make_executor("slurm", tmp_path, load_profile("local-test"))
    import submitit

    ex = launch.make_executor("local", tmp_path / "l", load_profile("local-test"))
    assert isinstance(ex, submitit.LocalExecutor) and ex.parameters["timeout_min"] == 20
    assert isinstance(launch.make_executor("debug", tmp_path / "d"), submitit.DebugExecutor)


def _fake_run(seed, task, backbone="vit_micro_patch8_32.mae_test"):
    # make_packs reads only these (engine.packing.pack_key: the config dict and the stage's
    # splits); building real Runs would load every config (slow on a busy CPU)
    cfg = {"backbone": {"name": backbone, "checkpoint": ""},
           "data": {"benchmark": "synthetic", "task": task}, "optim": {"lr": 0.1 * (seed + 1)}}
    exp = SimpleNamespace(to_dict=lambda: cfg, data=SimpleNamespace(task=task))
    return SimpleNamespace(experiment=exp, train_split="train", eval_splits=["val"], seed=seed)


def test_make_packs_groups_by_backbone_and_task():
    a = [_fake_run(s, "shapes") for s in range(3)]
    b = [_fake_run(s, "stripes") for s in range(2)]
    other = _fake_run(9, "shapes", backbone="vit_micro_patch8_32.mocov3_test")
    runs = [a[0], b[0], a[1], other, b[1], a[2]]
    packs = launch.make_packs(runs, pack_size=2)
    assert [[r.seed for r in p] for p in packs] == [[0, 1], [2], [0, 1], [9]]
    tasks = [{r.experiment.data.task for r in p} for p in packs]
    assert tasks == [{"shapes"}, {"shapes"}, {"stripes"}, {"shapes"}]
    assert [len(p) for p in launch.make_packs(runs, 1)] == [1] * 6
    with pytest.raises(ValueError):
        launch.make_packs(runs, 0)


def test_import_needs_neither_slurm_nor_torch():
    env = dict(os.environ, PATH=os.path.dirname(sys.executable), PYTHONPATH=str(REPO))
    code = ("import sys, replicate.launch as L; print(sorted(L.KINDS)); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "['debug', 'local', 'slurm']" in out.stdout


def test_job_states_without_slurm_reads_run_directories(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no sacct: scheduler state unknown
    assert launch.submit.slurm_states(["12_0"]) == {}
    dirs = {name: tmp_path / "runs" / name for name in ("ok", "bad", "begun", "old")}
    for d in dirs.values():
        d.mkdir(parents=True)
    (dirs["ok"] / "record.json").write_text('{"status": "done", "metrics": {}}')
    (dirs["bad"] / "failed.json").write_text(json.dumps(
        {"error": "ValueError: boom", "traceback": "Traceback ...\nValueError: boom"}))
    import torch

    torch.save({"epoch": 2, "model": {}, "optimizer": {}, "history": []},
               dirs["begun"] / "last.ckpt")  # epochs 1-3 saved

    def entry(job_runs):
        return {"time": "t", "kind": "slurm", "job_name": "x", "profile": "p", "code_dir": None,
                "folder": str(tmp_path / "logs" / "jobs"),
                "jobs": [{"job_id": j, "runs": [{"run_id": n, "run_dir": str(dirs[n])}]}
                         for j, n in job_runs]}

    logs = tmp_path / "logs"
    logs.mkdir()
    with open(logs / "manifest.jsonl", "w") as f:
        f.write(json.dumps(entry([("7_0", "ok"), ("7_1", "bad"), ("7_2", "old")])) + "\n")
        f.write(json.dumps(entry([("9_0", "begun"), ("9_1", "old")])) + "\n")  # resubmission
    rows = {r["run_id"]: r for r in launch.job_states(logs)}
    assert {n: (r["job_id"], r["state"]) for n, r in rows.items()} == {
        "ok": ("7_0", "DONE"), "bad": ("7_1", "FAILED"), "begun": ("9_0", "INTERRUPTED"),
        "old": ("9_1", "UNKNOWN")}  # the latest submission of a run wins
    assert rows["bad"]["error"] == "ValueError: boom" and "Traceback" in rows["bad"]["traceback"]
    # a run whose job is gone says where it resumes
    assert rows["begun"]["error"].endswith("resumable from epoch 3: re-submit the stage")
    assert rows["old"]["error"].endswith("no epoch saved yet: re-submit the stage to start it "
                                         "again")
    assert all(r["scheduler_state"] == "UNKNOWN" for r in rows.values())
    (logs / "manifest.jsonl").write_text('{"truncated\n')
    with pytest.raises(LaunchError, match=r"manifest.jsonl:1: not a JSON line"):
        launch.job_states(logs)
