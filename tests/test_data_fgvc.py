"""FGVC: the pinned split files (the shared copy), fake copies of the five datasets in their own
folder layouts and VPT's JSON split format, the one-label-map rule, VPT's transforms,
in-memory vs streaming, the split download, and bad input."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from replicate.config import DataSpec
from replicate.data import DataError, fakes, fgvc, load
from replicate.data import transforms as T
from replicate.data.manifests import DataWarning, load_committed
from replicate.data.tasks import FGVC_CLASSES

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "fgvc_splits"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared split copy {SHARED} absent")
S = 32  # network input size in these tests (resize 36, crop 32)
ONE_EACH = {"train": 1, "val": 1, "test": 1}


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    def build(root):
        for task in FGVC_CLASSES:
            fakes.make_fake_fgvc(root, task, per_class=ONE_EACH, seed=len(task))
    return fakes.cached(tmp_path_factory.getbasetemp(), "fgvc_all", build)


def spec(root, task, **kw) -> DataSpec:
    return DataSpec("fgvc", task, root=str(root), image_size=kw.pop("image_size", S), **kw)


def quiet_load(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # fake split files are not the pinned ones
        return load(*args, **kw)


# --------------------------------------------------------------------------- shared copy
@needs_shared
@pytest.mark.parametrize("task", sorted(FGVC_CLASSES))
def test_shared_split_files_match_pins(task):
    m = load_committed("fgvc", task)
    d = SHARED / fgvc.DATASETS[task].split_dir
    for s in fgvc.FILE_SPLITS:
        assert fgvc.file_sha256(d / f"{s}.json") == m["split_files"][s]["sha256"], (task, s)
        assert len(json.loads((d / f"{s}.json").read_text())) == m["split_files"][s]["count"]
    files = fgvc.read_split_files(d)  # raises when two splits share an image
    labels = fgvc.label_map(task, files, d)
    assert len(labels) == FGVC_CLASSES[task] == m["num_classes"]
    tv = fgvc.split_entries(files, "trainval", labels)
    assert len(tv) == len(files["train"]) + len(files["val"])


@needs_shared
def test_shared_counts_are_vpt_table_8():
    # docs/data.md, FGVC table (the gift copy states it has VPT's splits, except Stanford Cars)
    want = {"cub": (5394, 600, 5794), "nabirds": (21536, 2393, 24633),
            "flowers": (1020, 1020, 6149), "dogs": (10800, 1200, 8580),
            "cars": (7329, 815, 8041)}
    for task, counts in want.items():
        d = SHARED / fgvc.DATASETS[task].split_dir
        assert tuple(len(json.loads((d / f"{s}.json").read_text())) for s in fgvc.FILE_SPLITS) \
            == counts


@needs_shared
def test_nabirds_one_label_map_vs_vpt_per_split_remap():
    d = SHARED / "nabirds"
    files = fgvc.read_split_files(d)
    labels = fgvc.label_map("nabirds", files, d)
    val_classes = sorted(set(files["val"].values()))
    assert len(val_classes) == 553 and {627, 975} - set(val_classes) == {627, 975}
    ours = dict(fgvc.split_entries(files, "val", labels))
    vpt_val = {c: i for i, c in enumerate(val_classes)}  # KMnP/vpt json_dataset.py per file
    key = next(k for k, c in files["val"].items() if c == 876)
    train_key = next(k for k, c in files["train"].items() if c == 876)
    assert ours[key] == dict(fgvc.split_entries(files, "train", labels))[train_key]
    assert vpt_val[876] == ours[key] - 1  # VPT's val label is shifted by the missing class 627


# --------------------------------------------------------------------------- fake copies
@pytest.mark.parametrize("task", sorted(FGVC_CLASSES))
def test_fake_layout_split_rule(fake_root, task):
    k = FGVC_CLASSES[task]
    with pytest.warns(DataWarning, match="differs from the pinned"):
        load(spec(fake_root, task), "val", train=False)
    sizes, keys = {}, {}
    for split in ("train", "val", "test", "trainval"):
        s = quiet_load(spec(fake_root, task), split, train=False)
        assert s.num_classes == k and not s.in_memory
        sizes[split] = len(s)
        keys[split] = {Path(p).relative_to(fake_root) for p in s.dataset.paths}
        assert min(s.dataset.labels) == 0 and max(s.dataset.labels) == k - 1
    assert sizes == {"train": k, "val": k, "test": k, "trainval": 2 * k}
    assert keys["trainval"] == keys["train"] | keys["val"]
    assert not (keys["train"] & keys["val"]) and not (keys["train"] & keys["test"]) \
        and not (keys["val"] & keys["test"])
    x, y = s.dataset[0]
    assert x.dtype == torch.uint8 and x.shape == (3, S, S) and 0 <= y < k
    # the image root is the dataset's own (docs/data.md, FGVC table)
    root = fgvc.DATASETS[task]
    assert all(str(p).startswith(str(fake_root / root.folder / root.image_root))
               for p in s.dataset.paths)


def test_val_lacking_classes_keeps_train_labels(tmp_path):
    files = fakes.make_fake_fgvc(tmp_path, "flowers", per_class=ONE_EACH, drop_from_val=(3, 50))
    val = quiet_load(spec(tmp_path, "flowers"), "val", train=False)
    train = quiet_load(spec(tmp_path, "flowers"), "train", train=False)
    assert len(val) == 100 and val.num_classes == 102
    by_class_train = {files["train"][Path(p).relative_to(tmp_path / "Flowers").as_posix()]: y
                      for p, y in zip(train.dataset.paths, train.dataset.labels)}
    for p, y in zip(val.dataset.paths, val.dataset.labels):
        cid = files["val"][Path(p).relative_to(tmp_path / "Flowers").as_posix()]
        assert y == by_class_train[cid] == cid - 1  # class ids 1..102 -> labels 0..101
    assert {2, 49} & set(val.dataset.labels) == set() and 50 in set(val.dataset.labels)


def test_in_memory_and_streaming_give_identical_tensors(fake_root):
    mem = quiet_load(spec(fake_root, "flowers", in_memory=True), "test", train=False)
    stream = quiet_load(spec(fake_root, "flowers"), "test", train=False)
    assert mem.in_memory and not stream.in_memory
    loader = torch.utils.data.DataLoader(stream.dataset, batch_size=40, num_workers=1,
                                         pin_memory=False)
    xs, ys = zip(*loader)
    assert torch.equal(torch.cat(xs), mem.images) and torch.equal(torch.cat(ys), mem.labels)


def test_in_memory_training_split_is_held_on_the_device(fake_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # data.in_memory is honoured for training splits too
        warnings.simplefilter("ignore", DataWarning)  # (fake split files are not the pinned ones)
        s = load(spec(fake_root, "dogs", in_memory=True), "train", train=True)
        plain = load(spec(fake_root, "dogs"), "train", train=True)
    assert not s.in_memory and s.source.train  # crops are cut per batch from the cache
    assert s.source.resident and not plain.source.resident


# --------------------------------------------------------------------------- transforms
def test_vpt_fgvc_sizes():
    assert [T.fgvc_sizes(s) for s in (224, 384, 448)] == [(256, 224), (438, 384), (512, 448)]
    assert T.fgvc_sizes(32) == (36, 32)


def test_vpt_fgvc_transform_matches_torchvision_recipe():
    import numpy as np
    import torchvision.transforms as tv
    from PIL import Image
    img = Image.fromarray(np.random.RandomState(0).randint(0, 256, (300, 400, 3), np.uint8))
    ev = T.build("vpt-fgvc", 224, train=False)(img)
    # KMnP/vpt src/data/transforms.py eval branch, up to ToTensor (x255 undoes its /255)
    ref = tv.Compose([tv.Resize(256), tv.CenterCrop(224), tv.ToTensor()])(img)
    assert ev.dtype == torch.uint8 and ev.shape == (3, 224, 224)
    assert torch.equal(ev, (ref * 255).round().to(torch.uint8))
    tr = T.build("vpt-fgvc", 224, train=True)
    resized = (tv.Compose([tv.Resize(256), tv.ToTensor()])(img) * 255).round().to(torch.uint8)
    assert resized.shape == (3, 256, 341)
    for seed in (3, 4, 5):
        torch.manual_seed(seed)
        a = tr(img)
        # RandomCrop then RandomHorizontalFlip draw from torch's global RNG in this order
        torch.manual_seed(seed)
        i = int(torch.randint(0, 256 - 224 + 1, (1,)))
        j = int(torch.randint(0, 341 - 224 + 1, (1,)))
        flip = bool(torch.rand(1) < 0.5)
        want = resized[:, i:i + 224, j:j + 224]
        assert torch.equal(a, want.flip(-1) if flip else want), seed


# --------------------------------------------------------------------------- split download
@needs_shared
def test_fetch_split_files_verifies_checksums(tmp_path):
    out = fgvc.fetch_split_files(str(tmp_path / "a"), ["cub"], source_dir=str(SHARED),
                                 log=lambda s: None)
    assert [p.name for p in out] == ["train.json", "val.json", "test.json"]
    url = (SHARED).as_uri()  # the download path, through urllib, from a file:// mirror
    fgvc.fetch_split_files(str(tmp_path / "b"), ["flowers"], base_url=url, log=lambda s: None)
    assert fgvc.pin_problems("flowers", tmp_path / "b" / "oxfordflowers") == []
    bad = tmp_path / "bad" / "cub"
    shutil.copytree(SHARED / "cub", bad)
    (bad / "val.json").write_text((bad / "val.json").read_text().replace('"157"', '"158"', 1))
    with pytest.raises(DataError, match="val.json' has sha256 .* pinned"):
        fgvc.fetch_split_files(str(tmp_path / "c"), ["cub"], source_dir=str(bad.parent),
                               log=lambda s: None)
    assert not (tmp_path / "c" / "cub" / "val.json").exists()


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def flowers_copy(tmp_path):
    fakes.make_fake_fgvc(tmp_path, "flowers", per_class=ONE_EACH)
    return tmp_path


def test_missing_root_and_unset_data_root(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=f"data root '{tmp_path / 'nope'}' does not exist"):
        load(spec(tmp_path / "nope", "cub"), "train", train=True)
    monkeypatch.delenv("DATA_ROOT", raising=False)
    with pytest.raises(DataError, match="DATA_ROOT is not set"):
        load(DataSpec("fgvc", "cub"), "train", train=True)


def test_missing_dataset_folder_names_the_download(tmp_path):
    with pytest.raises(DataError, match=rf"'{tmp_path / 'CUB_200_2011'}' does not exist.*CUB_200"):
        load(spec(tmp_path, "cub"), "train", train=True)


def test_unknown_task(tmp_path):
    with pytest.raises(DataError, match="unknown FGVC task 'birds'"):
        load(spec(tmp_path, "birds"), "train", train=True)


def test_missing_or_malformed_split_file(flowers_copy):
    val = flowers_copy / "fgvc_splits" / "oxfordflowers" / "val.json"
    text = val.read_text()
    val.write_text(text[:-5])
    with pytest.raises(DataError, match=rf"split file '{val}' is not valid JSON.*data-fgvc-splits"):
        quiet_load(spec(flowers_copy, "flowers"), "train", train=True)
    val.write_text(json.dumps({"jpg/x.jpg": [1]}))
    with pytest.raises(DataError, match=rf"{val}': class id of 'jpg/x.jpg' is \[1\]"):
        quiet_load(spec(flowers_copy, "flowers"), "train", train=True)
    val.unlink()
    with pytest.raises(DataError, match=rf"split file '{val}' not found: run `make data-fgvc"):
        quiet_load(spec(flowers_copy, "flowers"), "train", train=True)


def test_overlapping_splits_and_wrong_class_count(flowers_copy):
    d = flowers_copy / "fgvc_splits" / "oxfordflowers"
    train = json.loads((d / "train.json").read_text())
    test = json.loads((d / "test.json").read_text())
    k = next(iter(train))
    (d / "test.json").write_text(json.dumps({**test, k: train[k]}))
    with pytest.raises(DataError, match=f"'{k}' is in both train.json and test.json"):
        quiet_load(spec(flowers_copy, "flowers"), "test", train=False)
    (d / "test.json").write_text(json.dumps({**test, "jpg/extra.jpg": 999}))
    with pytest.raises(DataError, match=rf"'{d}' list 103 classes, flowers has 102"):
        quiet_load(spec(flowers_copy, "flowers"), "test", train=False)


def test_missing_empty_and_corrupted_images(flowers_copy):
    s = quiet_load(spec(flowers_copy, "flowers"), "test", train=False)
    empty, broken, gone = (Path(p) for p in s.dataset.paths[:3])
    empty.write_bytes(b"")  # the cache notices the change and decodes again: errors at load
    with pytest.raises(DataError, match=rf"image '{empty}' is empty"):
        quiet_load(spec(flowers_copy, "flowers"), "test", train=False)
    shutil.copyfile(gone, empty)
    broken.write_bytes(broken.read_bytes()[:40])  # truncated JPEG
    with pytest.raises(DataError, match=rf"image '{broken}' cannot be decoded"):
        quiet_load(spec(flowers_copy, "flowers", num_workers=2), "test", train=False)
    gone.unlink()
    with pytest.raises(DataError, match=rf"(?s)1 of 102 image files are missing.*{gone}"):
        quiet_load(spec(flowers_copy, "flowers"), "test", train=False)


def test_unknown_transform_and_format(fake_root):
    with pytest.raises(DataError, match="unknown transform recipe 'randaug'"):
        quiet_load(spec(fake_root, "cub", transform="randaug"), "train", train=True)
    with pytest.raises(DataError, match="format 'noah' is not supported"):
        quiet_load(spec(fake_root, "cub", format="noah"), "train", train=True)
