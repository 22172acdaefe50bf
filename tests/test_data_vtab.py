"""VTAB-1k: label rules of the structured tasks on hand-made examples, VPT's slicing, the TF-v1
resize, the lossless export -> reader round trip and the NOAH reader on fake copies (tiny random
images in the real layouts, protocol counts), in-memory vs streaming, and bad input."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from replicate.config import DataSpec
from replicate.data import DataError, fakes, load
from replicate.data import transforms as T
from replicate.data import vtab_tasks as V
from replicate.data.manifests import DataWarning
from replicate.data.tasks import VTAB_TASKS

TASK = "kitti_dist"  # smallest test split (711): keeps fake copies small
S = 16  # network input size in these tests


@pytest.fixture(scope="module")
def rep_root(tmp_path_factory):
    return fakes.cached(tmp_path_factory.getbasetemp(), "vtab_rep",
                        lambda p: fakes.make_fake_vtab(p, TASK, "replicate"))


@pytest.fixture(scope="module")
def noah_root(tmp_path_factory):
    return fakes.cached(tmp_path_factory.getbasetemp(), "vtab_noah",
                        lambda p: fakes.make_fake_vtab(p, TASK, "noah"))


def spec(root, **kw) -> DataSpec:
    return DataSpec("vtab1k", kw.pop("task", TASK), root=str(root), image_size=S, **kw)


# --------------------------------------------------------------------------- labels
def test_clevr_labels_on_hand_made_scenes():
    assert V.clevr_count_label(np.zeros(3)) == 0
    assert V.clevr_count_label(np.zeros(10)) == 7
    coords = lambda *depths: np.array([[0.0, 0.0, d] for d in depths])
    # bins (0,8] (8,8.5] (8.5,9] (9,9.5] (9.5,10] (10,100]: label from the CLOSEST object
    assert V.clevr_dist_label(coords(12.0, 7.9)) == 0
    assert V.clevr_dist_label(coords(8.0)) == 0          # 8.0 is not > 8.0
    assert V.clevr_dist_label(coords(8.25, 30.0)) == 1
    assert V.clevr_dist_label(coords(9.2)) == 3
    assert V.clevr_dist_label(coords(9.5)) == 3
    assert V.clevr_dist_label(coords(9.51)) == 4
    assert V.clevr_dist_label(coords(50.0, 10.5)) == 5


def test_kitti_closest_vehicle_bins_with_sentinel():
    car, van, truck, ped = 0, 1, 2, 3
    loc = lambda *zs: np.array([[1.0, 1.0, z] for z in zs])
    assert V.kitti_dist_label(np.array([], np.int64), np.zeros((0, 3))) == 3  # no object
    assert V.kitti_dist_label(np.array([ped]), loc(2.0)) == 3                 # no vehicle
    assert V.kitti_dist_label(np.array([car]), loc(5.0)) == 0
    assert V.kitti_dist_label(np.array([van]), loc(8.0)) == 0                 # 8 is not > 8
    assert V.kitti_dist_label(np.array([truck, ped]), loc(8.5, 1.0)) == 1     # pedestrian ignored
    assert V.kitti_dist_label(np.array([car, car]), loc(40.0, 25.0)) == 2
    assert V.kitti_dist_label(np.array([car]), loc(999.0)) == 2               # 999 is not > 999
    assert V.kitti_dist_label(np.array([car]), loc(999.5)) == 3


def test_dsprites_binning_matches_float32_floordiv():
    loc = [V.dsprites_label(v, 32) for v in range(32)]
    assert loc == [v // 2 for v in range(32)]
    ori = [V.dsprites_label(v, 40) for v in range(40)]
    assert ori[:8] == [0, 0, 0, 1, 1, 2, 2, 2]          # 3/2.5 = 1.2, 5/2.5 = 2
    assert ori[-1] == 15 and sorted(set(ori)) == list(range(16))
    assert [ori.count(k) for k in range(16)] == [3, 2] * 8


def test_passthrough_and_image_rules():
    t = V.TASKS["smallnorb_ele"]
    assert t.label({"label_elevation": np.int64(7), "label_azimuth": 3}) == 7
    assert V.TASKS["dmlab"].label({"label": 5}) == 5
    img = np.array([[0, 1], [1, 0]], np.uint8)[:, :, None]
    out = V.TASKS["dsprites_loc"].image(img)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert (out[..., 2] == img[..., 0] * 255).all()
    assert (V.TASKS["smallnorb_azi"].image(img * 7)[..., 1] == img[..., 0] * 7).all()


# --------------------------------------------------------------------------- slicing
@pytest.mark.parametrize("task,val200,test,n_test", [
    ("cifar100", "train[45000:45200]", "test", 10_000),
    ("caltech101", "train[2754:2954]", "test", 6_084),
    ("pets", "train[2944:3144]", "test", 3_669),
    ("svhn", "train[65931:66131]", "test", 26_032),
    ("eurosat", "train[16200:16400]", "train[21600:]", 5_400),
    ("resisc45", "train[18900:19100]", "train[25200:]", 6_300),
    ("clevr_count", "train[63000:63200]", "validation", 15_000),
    ("dsprites_ori", "train[589824:590024]", "train[663552:]", 73_728),
    ("smallnorb_azi", "test[:200]", "test[50%:]", 12_150),
    ("dtd", "validation[:200]", "test", 1_880),
    ("kitti_dist", "validation[:200]", "test", 711),
])
def test_vpt_slicing(task, val200, test, n_test):
    t = V.TASKS[task]
    s = t.tfds_splits()
    assert s["train800"] == "train[:800]" and s["val200"] == val200 and s["test"] == test
    assert s["train800val200"] == f"train[:800]+{val200}"
    assert V.expected_count(task, "test") == n_test


@pytest.mark.parametrize("task", sorted(VTAB_TASKS))
def test_split_sizes_and_disjointness(task):
    t = V.TASKS[task]
    ids = {n: t.sample_ids(n) for n in V.VTAB_SPLITS}
    assert [len(ids[n]) for n in ("train800", "val200", "train800val200")] == [800, 200, 1000]
    assert ids["train800val200"] == ids["train800"] + ids["val200"]
    for a, b in [("train800", "val200"), ("train800val200", "test")]:
        assert not set(ids[a]) & set(ids[b]), (task, a, b)
    assert t.num_classes == VTAB_TASKS[task][1]


def test_parse_split_spec_percent_and_negative():
    sizes = {"train": 10, "test": 24_300}
    assert V.parse_split_spec("test[50%:]", sizes) == [("test", 12_150, 24_300)]
    assert V.parse_split_spec("train[:800]+test[:200]", {"test": 300}) == \
        [("train", 0, 800), ("test", 0, 200)]
    assert V.parse_split_spec("train[-3:]", sizes) == [("train", 7, 10)]
    with pytest.raises(KeyError):
        V.parse_split_spec("validation", sizes)


# --------------------------------------------------------------------------- resize
def test_tf1_resize_legacy_sampling():
    x = torch.tensor([[[0.0, 10.0], [20.0, 30.0]]])
    up = T.tf1_resize_bilinear(x, (4, 4))[0]
    want = torch.tensor([[0, 5, 10, 10], [10, 15, 20, 20], [20, 25, 30, 30], [20, 25, 30, 30.]])
    assert torch.equal(up, want)
    # half-pixel sampling (TF2 / torch align_corners=False) gives other values: v1 is not v2
    assert not torch.equal(up, F.interpolate(x[None], (4, 4), mode="bilinear",
                                             align_corners=False)[0, 0])
    down = T.tf1_resize_bilinear(torch.arange(16.0).view(1, 4, 4), (2, 2))[0]
    assert torch.equal(down, torch.tensor([[0.0, 2.0], [8.0, 10.0]]))  # top-left samples
    same = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    assert torch.equal(T.to_uint8(T.tf1_resize_bilinear(same, (5, 7))), same)
    rect = T.tf1_resize_bilinear(torch.arange(6.0).view(1, 2, 3), (2, 6))[0]
    # exact: the TF1 scale 3/6 = 0.5 makes every sample position and weight dyadic in float32
    assert torch.equal(rect[0], torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.0]))


# --------------------------------------------------------------------------- export + reader
def test_export_reader_round_trip(rep_root):
    task_dir = rep_root / "vtab1k" / TASK
    got = {}
    for split, name in [("val", "val200"), ("trainval", "train800val200")]:
        s = load(spec(rep_root), split, train=split == "trainval")
        assert s.in_memory and s.images.dtype == torch.uint8
        assert s.images.shape == (V.expected_count(TASK, name), 3, S, S)
        assert s.labels.tolist() == fakes.fake_vtab_labels(TASK, name)
        assert s.num_classes == 4 and int(s.labels.max()) < 4
        got[split] = s
    assert got["trainval"].labels[:800].tolist() == fakes.fake_vtab_labels(TASK, "train800")
    assert torch.equal(got["trainval"].images[800:], got["val"].images)
    # the pixels are the TFDS pixels, resized with the TF-v1 rule
    first = fakes.fake_vtab_example(TASK, "train", 0)["image"]
    want = T.to_uint8(T.tf1_resize_bilinear(T.hwc_to_chw(first), (S, S)))
    assert torch.equal(got["trainval"].images[0], want)
    lines = (task_dir / "val200.txt").read_text().splitlines()
    assert lines[0].startswith("images/validation/0000000.png ")


def test_test_split_resized_per_batch_equals_the_cpu_reference(rep_root):
    # the test split is cut per batch from the source-resolution cache; the 1,000-image splits
    # and the CPU reference (decode + resize per image) give the same tensors
    from replicate.data.vtab import load_resized
    for in_memory in (False, True):
        s = load(spec(rep_root, in_memory=in_memory, num_workers=1), "test", train=False)
        assert not s.in_memory and s.source.resident == in_memory
        loader = torch.utils.data.DataLoader(s.dataset, batch_size=128, num_workers=1)
        xs, ys = zip(*loader)
        ref = load_resized(s.dataset.paths, S)
        assert torch.equal(torch.cat(xs), ref)
        assert torch.equal(s.source.all(), ref)
        assert torch.equal(torch.cat(ys), s.labels if s.labels is not None else s.source.labels)


def test_noah_reader_warns_and_reads(noah_root):
    with pytest.warns(DataWarning, match="lossy"):
        s = load(spec(noah_root), "val", train=False)
    assert s.labels.tolist() == fakes.fake_vtab_labels(TASK, "val200")
    assert s.images.shape == (200, 3, S, S)


def test_auto_prefers_the_lossless_copy(rep_root, noah_root, tmp_path):
    (tmp_path / "vtab1k").symlink_to(rep_root / "vtab1k")
    (tmp_path / "vtab-1k").symlink_to(noah_root / "vtab-1k")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # the lossless copy: no JPEG warning
        s = load(spec(tmp_path), "val", train=False)
    assert len(s) == 200


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def rep_copy(rep_root, tmp_path):
    shutil.copytree(rep_root / "vtab1k", tmp_path / "vtab1k")
    return tmp_path


def test_missing_task_names_paths_and_export_command(tmp_path):
    with pytest.raises(DataError) as e:
        load(spec(tmp_path), "train", train=True)
    assert str(tmp_path / "vtab1k" / TASK) in str(e.value)
    assert "export-vtab" in str(e.value) and str(tmp_path / "vtab-1k" / "kitti") in str(e.value)


def test_unknown_task_and_root(tmp_path):
    with pytest.raises(DataError, match="unknown VTAB-1k task 'cifar10'"):
        load(spec(tmp_path, task="cifar10"), "train", train=True)
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        load(spec(tmp_path / "nope"), "train", train=True)


def test_malformed_list_and_bad_label(rep_copy):
    lst = rep_copy / "vtab1k" / TASK / "val200.txt"
    lines = lst.read_text().splitlines()
    lst.write_text("\n".join([lines[0].split()[0]] + lines[1:]) + "\n")
    with pytest.raises(DataError, match=rf"{lst}:1: expected"):
        load(spec(rep_copy), "val", train=False)
    lst.write_text("\n".join([lines[0].split()[0] + " 9"] + lines[1:]) + "\n")
    with pytest.raises(DataError, match=rf"{lst}:1: label 9 outside 0..3"):
        load(spec(rep_copy), "val", train=False)
    lst.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(DataError, match="lists 199 images.*has 200"):
        load(spec(rep_copy), "val", train=False)
    lst.unlink()
    with pytest.raises(DataError, match=str(lst)):
        load(spec(rep_copy), "val", train=False)


def test_missing_empty_and_corrupted_images(rep_copy):
    d = rep_copy / "vtab1k" / TASK
    first_val = d / (d / "val200.txt").read_text().split()[0]
    first_val.unlink()
    with pytest.raises(DataError, match=rf"(?s)1 of 200 image files are missing.*{first_val}"):
        load(spec(rep_copy), "val", train=False)
    first_train = d / (d / "train800.txt").read_text().split()[0]
    first_train.write_bytes(b"")
    with pytest.raises(DataError, match=rf"{first_train}' is empty"):
        load(spec(rep_copy), "train", train=True)
    first_train.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match=rf"{first_train}' cannot be decoded"):
        load(spec(rep_copy), "train", train=True)
    first_test = d / (d / "test.txt").read_text().split()[0]
    first_test.write_bytes(b"not an image")
    with pytest.raises(DataError, match=str(first_test)):  # decoded into the cache at load
        load(spec(rep_copy), "test", train=False)


def test_export_rejects_out_of_range_labels(tmp_path):
    from replicate.data.vtab_export import export_examples
    task = "clevr_dist"  # a depth beyond the last threshold (100) gives label 6 of 6 classes

    def bad_source(split, start, stop):
        for i in range(start, stop):
            ex = fakes.fake_vtab_example(task, split, i)
            ex["objects"]["pixel_coords"] = np.array([[0.0, 0.0, 150.0]], np.float32)
            yield ex
    with pytest.raises(DataError, match=r"clevr_dist train:0: derived label 6 outside 0..5"):
        export_examples(V.TASKS[task], tmp_path, fakes.fake_sizes(task), bad_source, {},
                        log=lambda s: None)
    assert not (tmp_path / task / "manifest.json").exists()


@pytest.mark.parametrize("task,feature,bad,want", [
    ("clevr_dist", "pixel_coords", np.array([[1.0, 2.0, 9.0], [3.0, 4.0, -0.5]], np.float32),
     r"closest object depth \(min of objects/pixel_coords\[:, 2\]\) is -0.5, not above the "
     r"first threshold 0 of \[0.0, 8.0"),
    ("clevr_dist", "pixel_coords", np.array([[1.0, 2.0, 0.0]], np.float32),
     r"closest object depth .* is 0, not above"),       # 0 is not > 0: no bin either
    ("kitti_dist", "location", np.array([[1.0, 1.0, -100.0]], np.float32),
     r"closest vehicle depth \(min of objects/location\[:, 2\]\) is -100, not above the "
     r"first threshold -100"),
])
def test_depth_below_the_first_bin_is_a_data_error_naming_task_and_example(
        tmp_path, task, feature, bad, want):
    """VTAB's bins start above 0 (CLEVR) and -100 (KITTI): a depth at or below has no label."""
    from replicate.data.vtab_export import export_examples

    def with_bad(split, start, stop):
        for i in range(start, stop):
            ex = fakes.fake_vtab_example(task, split, i)
            if i == start + 2:  # the third example of each slice; the first slice fails first
                ex["objects"][feature] = bad
                if task == "kitti_dist":
                    ex["objects"]["type"] = np.array([0])  # a car
            yield ex
    with pytest.raises(DataError, match=want):  # the label rule itself
        V.TASKS[task].label({"objects": {"pixel_coords": bad, "location": bad,
                                         "type": np.array([0])}})
    with pytest.raises(DataError) as e:  # through the exporter: task and example index
        export_examples(V.TASKS[task], tmp_path, fakes.fake_sizes(task), with_bad, {},
                        log=lambda s: None)
    first_split = V.TASKS[task].tfds_splits(fakes.fake_sizes(task))["train800"].split("[")[0]
    assert re.match(f"{task} {first_split}:2: {want}", str(e.value)), str(e.value)
    assert not (tmp_path / task / "manifest.json").exists()


def test_export_without_tfds_names_the_install(tmp_path):
    try:
        import tensorflow_datasets  # noqa: F401
        pytest.skip("tensorflow-datasets is installed here")
    except ImportError:
        pass
    from replicate.data.vtab_export import export_from_tfds
    with pytest.raises(DataError, match="tensorflow-datasets"):
        export_from_tfds(TASK, str(tmp_path), str(tmp_path / "out"))
