"""One line per failure (issue 17.1): every harness error and OSError in ``python -m replicate``
ends as a single ``error: ...`` line that names the path or key, with exit status 2;
``--debug`` keeps the traceback.  A DataLoader worker's error is unwrapped to the original
harness error: no worker traceback inside the message, and the message only once."""
import errno
import gc
import json
import warnings

import pytest
import torch

from replicate import errors
from replicate.cli import main
from replicate.data import DataError, fakes
from tests.helpers import demo_paper, tiny_config_text

TINY = tiny_config_text('err-tiny')


@pytest.fixture(autouse=True)
def _collect_loaders():
    """Free DataLoader iterators that an exception's traceback kept alive, so their workers
    stop cleanly after each test rather than at interpreter exit."""
    yield
    gc.collect()


def one_error_line(capsys) -> str:
    """The error line: the last stderr line, the only one starting 'error:', no traceback
    (progress lines such as the image cache's may come before it)."""
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert sum(x.startswith("error:") for x in lines) == 1 and "Traceback" not in err, err
    return lines[-1]


@pytest.fixture
def papers(tmp_path, monkeypatch):
    """A papers/ root with one paper 'demo': a tiny smoke config and a published table."""
    return demo_paper(tmp_path, monkeypatch, {"tiny": TINY}).parent


def test_malformed_published_csv_is_one_line_before_any_training(papers, tmp_path, capsys):
    bad = papers / "demo" / "published.csv"
    bad.write_text("paper,value\ndemo,1\n")
    runs = tmp_path / "runs"
    rc = main(["reproduce", "--paper", "demo", "--mode", "smoke", "--executor", "inproc",
               "--runs-root", str(runs), "--out", str(tmp_path / "out" / "demo")])
    assert rc == 2
    err = one_error_line(capsys)
    assert str(bad) in err and "header" in err
    assert not runs.exists() or not list(runs.rglob("config.json"))  # checked before stage 1


def test_missing_checkpoint_names_the_file_and_the_fix(tmp_path, capsys):
    cfg = tmp_path / "tiny.py"
    cfg.write_text(tiny_config_text("err-tiny", backbone=dict(checkpoint=f"{tmp_path}/gone/mae.pth")))
    assert main(["run", str(cfg), "--runs-root", str(tmp_path / "runs")]) == 2
    err = one_error_line(capsys)
    assert f"{tmp_path}/gone/mae.pth" in err and "download" in err


def test_unwritable_runs_root_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # a file in the path: unwritable even for root
    cfg = tmp_path / "tiny.py"
    cfg.write_text(TINY)
    assert main(["run", str(cfg), "--runs-root", str(blocker / "runs")]) == 2
    err = one_error_line(capsys)
    assert str(blocker / "runs") in err and "RUNS_ROOT" in err


def test_unknown_paper_lists_the_known_ones(capsys):
    assert main(["plan", "--paper", "gatevpy"]) == 2
    err = one_error_line(capsys)
    assert "unknown paper 'gatevpy'" in err
    for p in ("gatevpt", "lspt", "vptm"):
        assert p in err
    assert "published hyper-parameters" not in err


def test_debug_keeps_the_traceback(tmp_path):
    cfg = tmp_path / "tiny.py"
    cfg.write_text(tiny_config_text("err-tiny", optim=dict(lr=-0.1)))
    from replicate.config import ConfigError
    with pytest.raises(ConfigError, match="optim.lr"):
        main(["run", str(cfg), "--runs-root", str(tmp_path / "runs"), "--debug"])


def test_oserror_line_names_path_and_fix():
    e = PermissionError(errno.EACCES, "Permission denied", "/scratch/runs/x")
    line = errors.error_line(e)
    assert line.startswith("error: Permission denied: /scratch/runs/x: ") and "RUNS_ROOT" in line
    assert errors.error_line(ZeroDivisionError("bug")) is None  # bugs keep their traceback


def _corrupt_flowers(tmp_path):
    root = tmp_path / "data"
    fakes.make_fake_fgvc(root, "flowers", per_class={"train": 1, "val": 1, "test": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fake split files are not the pinned ones
        from replicate.config import DataSpec
        from replicate.data import load
        split = load(DataSpec("fgvc", "flowers", root=str(root), image_size=32), "train", True)
    bad = split.dataset.paths[0]
    with open(bad, "r+b") as f:  # keep the header, cut the pixels: decoding fails
        f.truncate(40)
    return root, bad, split


class _BadImages(torch.utils.data.Dataset):
    """Item 0 raises the harness's DataError, as a corrupted image does."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i):
        if i == 0:
            raise DataError("image '/data/flowers/jpg/1.jpg' cannot be decoded: re-download it")
        return torch.zeros(3, 4, 4, dtype=torch.uint8), 0


def test_worker_error_is_unwrapped_to_the_original():
    loader = torch.utils.data.DataLoader(_BadImages(), batch_size=2, num_workers=1)
    batches = iter(loader)
    try:
        with pytest.raises(DataError) as e:
            next(batches)
    finally:  # stop the worker now, not at interpreter exit
        batches._shutdown_workers()
    assert "Original Traceback" in str(e.value)  # what torch gives: the worker's traceback
    orig = errors.unwrap_worker_error(e.value)
    assert type(orig) is DataError
    assert str(orig) == "image '/data/flowers/jpg/1.jpg' cannot be decoded: re-download it"
    line = errors.error_line(e.value)
    assert line == f"error: {orig}"  # once, without the worker's traceback


def test_corrupted_fgvc_image_with_workers_is_one_line(tmp_path, capsys):
    root, bad, _ = _corrupt_flowers(tmp_path)
    cfg = tmp_path / "fgvc.py"
    cfg.write_text(tiny_config_text(
        "err-tiny", protocol="fgvc-vpt",
        data=dict(benchmark="fgvc", task="flowers", root=str(root), num_workers=1),
        optim=dict(batch_size=400, lr_scaling="linear256")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["run", str(cfg), "--runs-root", str(tmp_path / "runs")])
    assert rc == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    err = lines[-1]
    assert err.startswith("error: ") and "Traceback" not in out.err + out.out
    assert bad in err and "worker" not in err
    # the error once: not also echoed by the run's log, not repeated inside itself
    assert (out.out + out.err).count("cannot be decoded") == 1, out
    failed = next((tmp_path / "runs").rglob("failed.json"))
    assert "Original Traceback" not in json.loads(failed.read_text())["error"]
