"""The two exact environments: conda files and pip locks agree, each names the CUDA build it
carries and the GPUs it runs on, and the running interpreter matches its own lock.

classification: environment.yml = requirements/base.lock (current torch; FGVC, VTAB-1k, demo)
segmentation:   environment-seg.yml = requirements/seg.lock (torch 2.1 + mmcv ops + mmseg)
"""
import json
import re
from pathlib import Path

import pytest

from replicate import environments

ROOT = Path(__file__).resolve().parents[1]
CONDA = {"classification": "environment.yml", "segmentation": "environment-seg.yml"}
#: packages that change numbers or break installs: each conda file must pin them
NAMED = {"classification": ["torch", "torchvision", "triton", "timm", "mmengine", "submitit",
                            "pandas", "numpy", "scikit-learn", "matplotlib", "pytest"],
         "segmentation": ["torch", "torchvision", "triton", "timm", "mmengine", "mmcv",
                          "mmsegmentation", "submitit", "pandas", "numpy", "scikit-learn",
                          "matplotlib", "pytest"]}


def _pins(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\s*(?:-\s+)?([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def _ver(v: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:3])


@pytest.mark.parametrize("env", list(CONDA))
def test_conda_file_equals_lock(env):
    """Every version the conda file pins is the lock's (never older, never newer), and the
    conda file installs the whole lock."""
    text = (ROOT / CONDA[env]).read_text()
    conda, lock = _pins(text), environments.lock_pins(env)
    lock_file = environments.get(env).lock
    for name in NAMED[env]:
        assert name in conda, f"{CONDA[env]} does not pin {name}"
        assert name in lock, f"{lock_file} does not pin {name}"
    for name, v in conda.items():
        assert lock.get(name) == v, f"{name}: {CONDA[env]} {v} != {lock_file} {lock.get(name)}"
    assert f"-r {lock_file}" in text, f"{CONDA[env]} must install -r {lock_file}"
    assert re.search(rf"^name: {environments.get(env).conda_name}$", text, re.M)


def test_lock_lines_are_exact_and_unique():
    for env in CONDA:
        seen = set()
        for line in environments.get(env).lock_path().read_text().splitlines():
            line = line.strip()
            if not line or line.startswith(("#", "--")):
                continue
            m = re.match(r"^([A-Za-z0-9_.\-]+)==\S+$", line)
            assert m, f"{environments.get(env).lock}: '{line}' is not name==version"
            key = m.group(1).lower().replace("_", "-")
            assert key not in seen, f"{environments.get(env).lock}: {key} pinned twice"
            seen.add(key)


def _cuda_of_lock(pins: dict) -> str:
    """major.minor of the CUDA runtime wheel torch depends on (nvidia-cuda-runtime[-cuXY])."""
    for name, v in pins.items():
        if name.startswith("nvidia-cuda-runtime"):
            return ".".join(v.split(".")[:2])
    raise AssertionError("lock has no nvidia-cuda-runtime wheel: which CUDA build is torch?")


@pytest.mark.parametrize("env", list(CONDA))
def test_files_name_the_cuda_build_and_gpus(env):
    """The conda file and the lock state the CUDA build of the locked torch (read off its
    nvidia-cuda-runtime dependency) and which GPU generations it runs on."""
    cuda = _cuda_of_lock(environments.lock_pins(env))
    tag = "cu" + cuda.replace(".", "")
    for f in (CONDA[env], environments.get(env).lock):
        text = (ROOT / f).read_text()
        assert f"CUDA {cuda}" in text and tag in text, f"{f} must name the CUDA {cuda} ({tag}) build"
        assert "Hopper" in text and "driver" in text, f"{f} must say which GPUs/driver it needs"
        assert "Blackwell" in text, f"{f} must say whether Blackwell GPUs run it"


def test_classification_is_current_and_runs_on_blackwell():
    pins = environments.lock_pins("classification")
    # Blackwell (sm_100/sm_120) kernels ship from CUDA 12.8 builds and torch 2.7 on
    assert _ver(pins["torch"]) >= (2, 7)
    assert _ver(_cuda_of_lock(pins)) >= (12, 8)
    assert "mmcv" not in pins and "mmsegmentation" not in pins, "mmcv belongs to seg.lock"


def test_segmentation_stack_is_the_measured_one():
    lock = environments.lock_pins("segmentation")
    # the measured stack, unchanged: mmseg 1.2.2 asserts mmcv < 2.2.0 and imports mmcv.ops
    # (no mmcv-lite); mmcv 2.1.0 does not compile against torch >= 2.10; mmseg imports ftfy and
    # regex without declaring them; torch 2.1 wheels are built against numpy 1.x
    assert (lock["torch"], lock["mmcv"], lock["mmsegmentation"]) == ("2.1.2", "2.1.0", "1.2.2")
    assert "mmcv-lite" not in lock
    assert "ftfy" in lock and "regex" in lock
    assert lock["numpy"].startswith("1.")
    assert _ver(lock["setuptools"]) < (70,), "mmcv's setup.py needs pkg_resources"


def test_environments_share_everything_that_is_not_torch():
    """Only torch, its CUDA libraries and small utilities may differ: the packages that shape
    data, models and results are the same in both (so the cross-environment test compares
    torch builds, nothing else)."""
    a, b = environments.lock_pins("classification"), environments.lock_pins("segmentation")
    for name in ("timm", "mmengine", "numpy", "pandas", "scikit-learn", "pillow", "submitit",
                 "matplotlib", "scipy", "opencv-python", "pytest"):
        assert a[name] == b[name], f"{name}: base.lock {a[name]} != seg.lock {b[name]}"


def test_python_version_agrees():
    spec = re.search(r'requires-python = ">=(\d+\.\d+),<(\d+\.\d+)"',
                     (ROOT / "pyproject.toml").read_text())
    lo, hi = (tuple(map(int, v.split("."))) for v in spec.groups())
    for f in CONDA.values():
        m = re.search(r"python=(\d+\.\d+)", (ROOT / f).read_text())
        assert m, f"{f} pins no python"
        assert lo <= tuple(map(int, m.group(1).split("."))) < hi


def test_environment_is_recognised_by_torch_version():
    for name, env in environments.ENVIRONMENTS.items():  # jobs recognise it without the locks
        assert env.torch == environments.lock_pins(name)["torch"], \
            f"replicate/environments.py: {name} torch {env.torch} != {env.lock}"
    assert environments.which(environments.lock_pins("segmentation")["torch"] + "+cu121") \
        == "segmentation"
    assert environments.which(environments.lock_pins("classification")["torch"]) \
        == "classification"
    assert environments.which("1.0.0") is None
    assert environments.label({"torch": "2.1.2+cu121"}).endswith("(torch 2.1.2+cu121, CUDA 12.1)")
    text = "cuda 13.2, environment classification, numpy 1.26.4, torch 2.15.0+cu132"
    assert environments.label_from_text(text) == \
        "classification (torch 2.15.0+cu132, CUDA 13.2)"


def test_installed_versions_match_own_lock():
    """The interpreter running the tests is one of the two environments, exactly."""
    from importlib import metadata

    import torch

    env = environments.which(torch.__version__)
    assert env is not None, (f"torch {torch.__version__} is in neither lock: run `make install` "
                             f"(classification) or `make install-seg` (segmentation)")
    lock = environments.lock_pins(env)
    for name in ("torch", "torchvision", "timm", "mmengine", "numpy", "pandas", "submitit"):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} not installed: run {environments.get(env).make}")
        assert have.split("+")[0] == lock[name], f"{name} {have} != {env} lock {lock[name]}"


# ------------------------------------------------------------------ jobs pick their environment
def test_profile_names_each_environments_activation(tmp_path):
    from replicate.launch import ProfileError, load_profile

    site = load_profile("example-site")
    assert site["environments"]["segmentation"]["setup"] == ["conda activate vpt-replicate-seg"]
    assert site["environments"]["classification"]["python"] is None
    (tmp_path / "default.yaml").write_text((ROOT / "slurm/clusters/default.yaml").read_text())
    (tmp_path / "bad.yaml").write_text("environments:\n  detection: {setup: []}\n")
    with pytest.raises(ProfileError, match="detection"):
        load_profile("bad", directory=tmp_path)
    (tmp_path / "bad2.yaml").write_text("environments:\n  segmentation: {setup: conda}\n")
    with pytest.raises(ProfileError, match="environments.segmentation"):
        load_profile("bad2", directory=tmp_path)


def test_job_python_follows_profile_then_make_layout(tmp_path, monkeypatch):
    import importlib.util
    import sys

    prof = {"environments": {"segmentation": {"setup": ["conda activate s"], "python": None},
                             "classification": {"setup": [], "python": "/opt/cls/bin/python"}}}
    assert environments.job_python("classification", prof) == ("/opt/cls/bin/python", [])
    assert environments.job_python("segmentation", prof) == ("python", ["conda activate s"])
    assert environments.job_python("classification", None) == (sys.executable, [])
    # segmentation without a profile entry: this python only if it has mmseg, else .venv-seg
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n == "mmseg" else real(n, *a))
    with pytest.raises(environments.EnvironmentMissing, match="make install-seg"):
        environments.job_python("segmentation", None, repo=tmp_path)
    venv_py = tmp_path / ".venv-seg" / "bin" / "python"
    venv_py.parent.mkdir(parents=True)
    venv_py.write_text("")
    assert environments.job_python("segmentation", None, repo=tmp_path) == (str(venv_py), [])


def test_local_executor_starts_jobs_in_the_named_environment(tmp_path):
    from replicate import launch

    prof = launch.load_profile("local-test")
    prof["environments"]["segmentation"] = {"setup": ["echo seg-env"],
                                            "python": "/envs/seg/bin/python"}
    ex = launch.make_executor("local", tmp_path / "l", prof, environment="segmentation")
    assert "/envs/seg/bin/python" in ex.python
    assert "echo seg-env" in ex.parameters.get("setup", [])
    ex = launch.make_executor("local", tmp_path / "c", prof)  # classification: this python
    import sys
    assert sys.executable in ex.python and "/envs/seg" not in ex.python


def test_doctor_names_the_missing_environment(monkeypatch, capsys, tmp_path):
    import sys

    import torch

    from replicate import doctor

    monkeypatch.setenv("REPLICATE_SEG_PYTHON", str(tmp_path / "no-env" / "bin" / "python"))
    monkeypatch.setenv("REPLICATE_CLS_PYTHON", sys.executable)
    rows = {what: (ok, msg) for what, ok, msg in doctor.check_environments()}
    ok, msg = rows["segmentation environment"]
    assert not ok and "missing" in msg and "make install-seg" in msg and "environment-seg.yml" in msg
    # this interpreter, declared the classification one: fine exactly when it has that torch
    ok, msg = rows["classification environment"]
    assert ok == (environments.which(torch.__version__) == "classification"), msg
    assert ("make install" in msg) != ok


def test_plan_and_reports_read_the_environment_of_each_record(tmp_path):
    recs = {"a": {"environment": "classification", "torch": "2.15.0+cu132", "cuda": "13.2"},
            "b": {"torch": "2.1.2+cu121"},  # a record from before the environment keys
            "c": {"environment": "classification", "torch": "2.15.0+cu132", "cuda": "13.2"}}
    for name, env in recs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "record.json").write_text(json.dumps({"env": env}))
    (tmp_path / "unfinished").mkdir()
    found = environments.of_records(tmp_path / n for n in [*recs, "unfinished"])
    assert found == {"classification (torch 2.15.0+cu132, CUDA 13.2)": 2,
                     "segmentation (torch 2.1.2+cu121, CUDA 12.1)": 1}
    from replicate.results.collect import environment_string
    assert environments.label_from_text(environment_string(recs["a"])) == \
        "classification (torch 2.15.0+cu132, CUDA 13.2)"
