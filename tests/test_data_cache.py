"""Decoded-image cache (replicate/data/cache.py): FGVC crops cut from the cache equal VPT's
per-epoch PIL pipeline, the batched VTAB resize equals the CPU TF-v1 reference, entries are
rebuilt when a source file or the transform changes, and batches (cached or from a persistent
DataLoader) depend on (seed, epoch) only, so a resumed run equals an uninterrupted one."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from replicate.data import DataError, Split, cache, fakes, load
from replicate.data import transforms as T
from replicate.data.fgvc import ImageFiles, read_image
from replicate.data.manifests import DataWarning
from replicate.engine import Run, execute
from replicate.engine import train as engine_train
from tests.helpers import tensors_equal, tiny_experiment

S, R = 32, 36  # crop and resize of the FGVC recipe at image_size 32 (fgvc_sizes)
#: image sizes (h, w): landscape, portrait, square, and extreme ratios
SIZES = [(30, 40), (40, 30), (37, 37), (50, 29), (29, 61), (33, 45)]
cpu = torch.device("cpu")


def write_images(folder: Path, sizes=SIZES, fmt: str = "JPEG", seed: int = 0) -> list:
    from PIL import Image
    rng = np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, (h, w) in enumerate(sizes):
        # smooth content + noise: JPEG-like statistics, every pixel value differs
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 5 + yy * 3 + 40 * c) % 256 for c in range(3)], -1)
        a = np.clip(base + rng.randint(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
        p = folder / f"img{n}.{'jpg' if fmt == 'JPEG' else 'png'}"
        Image.fromarray(a).save(p, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        paths.append(str(p))
    return paths


def fgvc_request(folder: Path, paths, resize: int = R) -> cache.Request:
    dec = cache.FgvcResize(resize)
    return cache.Request("fgvc", "test", "train", folder, tuple(paths), dec.transform(), dec)


def vtab_request(folder: Path, paths) -> cache.Request:
    return cache.Request("vtab1k", "test", "test", folder, tuple(paths), cache.rgb_transform(),
                         cache.decode_rgb)


@pytest.fixture
def jpegs(tmp_path):
    return tmp_path / "src", write_images(tmp_path / "src")


# ------------------------------------------------------------------ FGVC: identical tensors
@pytest.mark.parametrize("resident", [False, True])
def test_cached_crops_equal_the_per_epoch_path(jpegs, tmp_path, resident):
    folder, paths = jpegs
    store = cache.load_or_build(fgvc_request(folder, paths), tmp_path / "cache")
    labels = torch.arange(len(paths))
    train = cache.FgvcCrops(store, labels, S, True, resident).place(cpu)
    per_epoch = T.FgvcTransform(S, train=True)  # decode + Resize + RandomCrop + flip per item
    # one item, same global-RNG draws as torchvision's RandomCrop / RandomHorizontalFlip
    for i in range(len(paths)):
        for seed in (1, 2, 3):
            torch.manual_seed(seed)
            want = per_epoch(read_image(paths[i]))
            torch.manual_seed(seed)
            assert torch.equal(train.item(i), want), (i, seed)
    # whole batches: the crop / flip drawn from the epoch generator, applied to the PIL image
    import torchvision.transforms.functional as F
    g = torch.Generator().manual_seed(5)
    idx = torch.tensor([3, 0, 5, 1, 4, 2, 0])
    tops, lefts, flip = train.draw(idx.tolist(), g)
    assert 0 < int(flip.sum()) < len(idx)  # both branches exercised (seed chosen for it)
    got = train.cut(idx.tolist(), tops, lefts, flip, cpu)
    assert torch.equal(got, train.cut(idx.tolist(), tops, lefts, flip, cpu, use_numpy=False))
    resize = T.FgvcTransform(S, train=False).pipeline.transforms[0]
    for k, i in enumerate(idx.tolist()):
        img = F.crop(resize(read_image(paths[i])), tops[k], lefts[k], S, S)
        ref = F.pil_to_tensor(F.hflip(img) if flip[k] else img)
        assert torch.equal(got[k], ref), (k, i)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(train.batch(idx, g1, cpu), train.batch(idx, g2, cpu))
    # evaluation: torchvision's CenterCrop
    ev = cache.FgvcCrops(store, labels, S, False, resident).place(cpu)
    center = T.FgvcTransform(S, train=False)
    want = torch.stack([center(read_image(p)) for p in paths])
    assert torch.equal(ev.batch(torch.arange(len(paths)), None, cpu), want)


def test_crop_draws_cover_every_offset(jpegs, tmp_path):
    folder, paths = jpegs
    store = cache.load_or_build(fgvc_request(folder, paths), tmp_path / "cache")
    src = cache.FgvcCrops(store, torch.zeros(len(paths)), S, True, False)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(300):
        tops, lefts, _ = src.draw([4], g)  # 29x61 -> resized 36x75: 5 tops, 44 lefts
        seen.add((tops[0], lefts[0]))
    h, w = store.size(4)
    assert {t for t, _ in seen} == set(range(h - S + 1))
    assert {l for _, l in seen} <= set(range(w - S + 1)) and len({l for _, l in seen}) > 30


# ------------------------------------------------------------------ VTAB: device resize
def devices():
    return [cpu] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", devices(), ids=str)
def test_batched_tf1_resize_equals_the_cpu_reference(tmp_path, device):
    # mixed source sizes (grouped per batch) and a repeated size; bound: bit-identical (the
    # batched path calls the reference's own float32 element-wise ops; no fused multiply-add
    # in eager mode on either device)
    sizes = [(32, 32), (20, 48), (32, 32), (64, 40), (17, 17), (32, 32), (100, 75)]
    paths = write_images(tmp_path / "src", sizes, fmt="PNG")
    store = cache.load_or_build(vtab_request(tmp_path / "src", paths), tmp_path / "cache")
    ref_t = T.VtabTransform(24)
    ref = torch.stack([ref_t(read_image(p)) for p in paths])
    for resident in (False, True):
        src = cache.Tf1Resized(store, torch.zeros(len(paths)), 24, resident).place(device)
        order = torch.tensor([5, 1, 0, 6, 3, 2, 4])
        got = src.batch(order, None, device)
        assert got.device.type == device.type and got.dtype == torch.uint8
        assert torch.equal(got.cpu(), ref[order])
        assert torch.equal(src.all(device, chunk=3).cpu(), ref)


# ------------------------------------------------------------------ invalidation
def test_entry_is_rebuilt_when_a_source_or_the_transform_changes(jpegs, tmp_path):
    folder, paths = jpegs
    root = tmp_path / "cache"
    logs = []
    req = fgvc_request(folder, paths)
    first = cache.load_or_build(req, root, log=logs.append)
    entry = cache.entry_path(root, req)
    assert len(logs) == 2 and entry.is_dir()  # decoding ..., wrote ...
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["count"] == len(paths) and meta["transform"]["resize"] == R
    assert [f[3] for f in meta["files"]] == [cache.file_sha256(Path(p)) for p in paths]
    assert not [p for p in entry.parent.iterdir() if ".build-" in p.name]  # no temp left
    # same content, new mtime: re-hashed, not rebuilt
    os.utime(paths[0], ns=(1, 1))
    cache.load_or_build(req, root, log=logs.append)
    assert len(logs) == 2
    # changed content: rebuilt, new pixels
    write_images(folder, SIZES[:1], seed=7)
    assert "changed" in cache.stale_reason(req, entry)
    again = cache.load_or_build(req, root, log=logs.append)
    assert len(logs) == 5 and "rebuilding" in logs[2]
    assert not torch.equal(again.view(0), first.view(0)) and torch.equal(again.view(1),
                                                                         first.view(1))
    # another transform: an entry of its own
    other = fgvc_request(folder, paths, resize=40)
    assert cache.entry_path(root, other) != entry
    assert cache.load_or_build(other, root).size(2) == (40, 40)
    # a transform recorded differently (e.g. another Pillow version) is stale
    bumped = cache.Request(req.benchmark, req.task, req.split, req.base, req.files,
                           req.transform[:-1] + (("torchvision", "0.0"),), req.decode)
    meta = json.loads((entry / "meta.json").read_text())
    meta["transform"] = bumped.transform_dict()
    (entry / "meta.json").write_text(json.dumps(meta))
    assert "transform changed" in cache.stale_reason(req, entry)


def test_corrupted_entry_is_detected(jpegs, tmp_path):
    folder, paths = jpegs
    root = tmp_path / "cache"
    req = fgvc_request(folder, paths)
    cache.load_or_build(req, root)
    entry = cache.entry_path(root, req)
    data = entry / "images.u8"
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF  # same size: only the full verification sees it
    data.write_bytes(bytes(raw))
    assert cache.stale_reason(req, entry) is None
    assert "corrupted" in cache.stale_reason(req, entry, full=True)
    data.write_bytes(bytes(raw[:-5]))  # truncated: seen on every load, and rebuilt
    assert "wrong size" in cache.stale_reason(req, entry)
    store = cache.load_or_build(req, root)
    want = cache.build_in_memory(req)
    assert all(torch.equal(store.view(i), want.view(i)) for i in range(len(paths)))


def test_cache_root_setting(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "env"))
    assert cache.cache_root("") == tmp_path / "env"
    assert cache.cache_root(str(tmp_path / "cfg")) == tmp_path / "cfg"  # the config key wins
    assert cache.cache_root("off") is None
    monkeypatch.delenv(cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root("") == tmp_path / "xdg" / "vpt-replicate" / "images"
    with pytest.raises(DataError, match="UNSET_VAR_X"):
        cache.cache_root("${UNSET_VAR_X}/c")


def test_unwritable_root_names_the_setting(jpegs, tmp_path):
    folder, paths = jpegs
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match="data.cache_root"):
        cache.load_or_build(fgvc_request(folder, paths), blocker / "sub")


# ------------------------------------------------------------------ loaders and resume
@pytest.fixture(scope="module")
def flowers(tmp_path_factory):
    return fakes.cached(tmp_path_factory.getbasetemp(), "fgvc_cache_flowers",
                        lambda p: fakes.make_fake_fgvc(p, "flowers", per_class={
                            "train": 1, "val": 1, "test": 1}, image_hw=(30, 44)))


def fgvc_split(root, split="train", train=True, **kw):
    from replicate.config import DataSpec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # fake split files
        return load(DataSpec("fgvc", "flowers", root=str(root), image_size=S, num_workers=0,
                             **kw), split, train)


def test_cached_batches_depend_on_seed_and_epoch_only(flowers):
    host = engine_train.Batches(fgvc_split(flowers), 40, cpu, True, 0)
    dev = engine_train.Batches(fgvc_split(flowers, in_memory=True), 40, cpu, True, 0)
    assert dev.source.resident and not host.source.resident
    run = [list(host.epoch(3, e)) for e in range(3)]
    fresh = list(engine_train.Batches(fgvc_split(flowers), 40, cpu, True, 0).epoch(3, 2))
    for (xa, ya), (xb, yb), (xc, yc) in zip(run[2], fresh, dev.epoch(3, 2)):
        assert torch.equal(xa, xb) and torch.equal(xa, xc) and torch.equal(ya, yb)
        assert xa.shape[1:] == (3, S, S) and xa.dtype == torch.uint8
    assert not torch.equal(run[0][0][0], run[1][0][0])  # new crops and order each epoch
    tv = fgvc_split(flowers, "trainval")
    assert len(tv) == 204 and torch.equal(tv.source.store.view(102), tv.source.store.view(102))


class RandomItems(torch.utils.data.Dataset):
    """Items drawing from torch's global RNG like torchvision transforms."""

    def __len__(self) -> int:
        return 50

    def __getitem__(self, i: int):
        return torch.rand(3) + i, i


@pytest.mark.parametrize("workers", [0, 2])
def test_persistent_loader_is_exact_across_epochs_and_resume(workers):
    split = Split(RandomItems(), 2, "train", "random")
    b = engine_train.Batches(split, 8, cpu, True, workers)
    seen = [torch.cat([x for x, _ in b.epoch(1, e)]) for e in range(3)]
    loader = b._loader
    assert loader is not None and loader.persistent_workers == (workers > 0)
    again = torch.cat([x for x, _ in b.epoch(1, 1)])
    assert b._loader is loader  # the same loader (and workers) every epoch
    resumed = engine_train.Batches(split, 8, cpu, True, 2 - workers)  # other worker count
    assert torch.equal(again, seen[1])
    assert torch.equal(torch.cat([x for x, _ in resumed.epoch(1, 2)]), seen[2])
    assert not torch.equal(seen[0], seen[1])
    torch.manual_seed(0)
    state = torch.get_rng_state()
    list(b.epoch(1, 0))
    assert torch.equal(torch.get_rng_state(), state)  # the training RNG stream is untouched


def test_fgvc_run_resumes_exactly_from_the_cache(flowers, tmp_path):
    exp = tiny_experiment(**{"data": {"benchmark": "fgvc", "task": "flowers", "root": str(
        flowers), "image_size": S, "num_workers": 0, "in_memory": False, "transform": "auto"},
        "optim.epochs": 3, "optim.batch_size": 34})

    def make(root):
        return Run(exp, seed=0, stage="smoke", train_split="train", eval_splits=("val",),
                   runs_root=str(root), tags={})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        a = execute(make(tmp_path / "a"), echo=lambda m: None)
        rb = make(tmp_path / "b")
        polls = []
        assert execute(rb, echo=lambda m: None,
                       should_stop=lambda: polls.append(1) or len(polls) >= 1) is None
        b = execute(rb, echo=lambda m: None)
    assert a["metrics"] == b["metrics"]
    strip = lambda hs: [{k: v for k, v in h.items() if k != "images_per_s"} for h in hs]  # noqa
    assert strip(a["history"]) == strip(b["history"])
    ck = [torch.load(r / "last.ckpt")["model"] for r in (make(tmp_path / "a").run_dir,
                                                         rb.run_dir)]
    assert tensors_equal(*ck)


def test_image_files_reference_path_still_decodes_per_item(jpegs):
    folder, paths = jpegs  # the per-epoch path stays available as the reference (benchmarks)
    ds = ImageFiles(paths, list(range(len(paths))), T.build("vpt-fgvc", S, train=False))
    assert ds[0][0].shape == (3, S, S)


def test_cli_builds_and_verifies_entries(flowers, tmp_path, capsys):
    from replicate.data.cli import main
    args = ["data", "cache", "--root", str(flowers), "--benchmark", "fgvc", "--task", "flowers",
            "--image-size", str(S), "--workers", "0", "--cache-root", str(tmp_path / "c")]
    assert main(args) == 0
    assert main(args + ["--verify"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 4 and all(line.startswith("ok") for line in lines)
    assert "cached under" in lines[0]  # built; then the 3 entries (train, val, test) verified
    data = next((tmp_path / "c" / "fgvc" / "flowers").glob("test-*")) / "images.u8"
    raw = bytearray(data.read_bytes())
    raw[0] ^= 1
    data.write_bytes(bytes(raw))
    assert main(args + ["--verify"]) == 1
    assert "corrupted" in capsys.readouterr().out


def test_epochs_iterated_side_by_side_do_not_share_the_loader():
    # packed runs iterate one Batches for several seeds in lockstep (engine/packed.py)
    split = Split(RandomItems(), 2, "train", "random")
    b = engine_train.Batches(split, 8, cpu, True, 1)
    alone = {s: torch.cat([x for x, _ in b.epoch(s, 0)]) for s in (1, 2)}
    pairs = list(zip(b.epoch(1, 0), b.epoch(2, 0)))
    assert torch.equal(torch.cat([p[0][0] for p in pairs]), alone[1])
    assert torch.equal(torch.cat([p[1][0] for p in pairs]), alone[2])


def test_cache_off_decodes_in_memory_with_the_same_pixels(flowers, tmp_path):
    off = fgvc_split(flowers, "val", train=False, cache_root="off")
    on = fgvc_split(flowers, "val", train=False, cache_root=str(tmp_path / "c"))
    assert (tmp_path / "c" / "fgvc" / "flowers").is_dir()
    idx = torch.arange(len(on))
    assert torch.equal(off.source.batch(idx, None, cpu), on.source.batch(idx, None, cpu))
