"""doctor tells the truth (issue 17.8): datasets are checked against the manifests (an empty
DATA_ROOT is not [ok]), SLURM by asking the controller (sbatch on PATH is not enough), and a
missing RUNS_ROOT is fine when its nearest existing parent is writable (the harness creates it).
"""
import os
import stat
import warnings

import pytest

from replicate import doctor
from replicate.data import fakes


def rows_ok(rows):
    return [ok for _, ok, _ in rows]


def test_empty_data_root_is_a_problem(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    rows = doctor.check_data()
    assert rows_ok(rows) == [False] and "no dataset found" in rows[0][2]
    doctor.doctor()
    assert "[FIX] data " in capsys.readouterr().out


def test_dataset_with_wrong_counts_is_a_problem(tmp_path, monkeypatch):
    # one image per class and split: far fewer than the manifest's Oxford Flowers counts
    fakes.make_fake_fgvc(tmp_path, "flowers", per_class={"train": 1, "val": 1, "test": 1})
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fake split files are not the pinned ones
        rows = {what: (ok, detail) for what, ok, detail in doctor.check_data()}
    ok, detail = rows["data fgvc/flowers"]
    assert not ok and "wrong count" in detail
    assert rows["data (absent)"][0] and "fgvc/cub" in rows["data (absent)"][1]


def _fake_bin(folder, name, body):
    p = folder / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_bin(bin_dir, "sbatch", "exit 0")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_sbatch_without_an_answering_controller_is_a_problem(fake_slurm):
    _fake_bin(fake_slurm, "sinfo", "echo 'slurm_load_partitions: Unable to contact slurm "
                                   "controller (connect failure)' >&2; exit 1")
    rows = doctor.check_slurm()
    assert rows_ok(rows) == [False]
    assert "Unable to contact slurm controller" in rows[0][2] and "EXECUTOR=local" in rows[0][2]


def test_a_hanging_controller_is_a_problem(fake_slurm, monkeypatch):
    _fake_bin(fake_slurm, "sinfo", "sleep 30")
    monkeypatch.setattr(doctor, "SINFO_TIMEOUT_S", 0.5)
    rows = doctor.check_slurm()
    assert rows_ok(rows) == [False] and "did not answer" in rows[0][2]


def test_an_answering_controller_is_ok(fake_slurm):
    _fake_bin(fake_slurm, "sinfo", "echo 'debug* up infinite 0/1/0/1 node1'")
    rows = doctor.check_slurm()
    assert rows_ok(rows) == [True] and "controller answers" in rows[0][2]


def test_missing_runs_root_with_writable_parent_is_ok(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNS_ROOT", str(tmp_path / "not" / "yet" / "runs"))
    row = [r for r in doctor.check_roots() if r[0] == "RUNS_ROOT"][0]
    assert row[1] and "created on first run" in row[2]
    assert not (tmp_path / "not").exists()  # doctor creates nothing


def test_runs_root_that_cannot_be_created_is_a_problem(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("RUNS_ROOT", str(blocker / "runs"))
    row = [r for r in doctor.check_roots() if r[0] == "RUNS_ROOT"][0]
    assert not row[1] and str(blocker) in row[2] and "RUNS_ROOT" in row[2]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_parent_is_a_problem(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    monkeypatch.setenv("RUNS_ROOT", str(ro / "runs"))
    try:
        row = [r for r in doctor.check_roots() if r[0] == "RUNS_ROOT"][0]
    finally:
        ro.chmod(0o755)
    assert not row[1] and "not writable" in row[2]
