"""``python -m replicate data verify``: check a user's data against the split manifests.

Each problem is one :class:`Finding` naming the path, what is wrong (missing files, wrong
counts, changed ordering, wrong label set, changed or corrupted files) and what to do.  On the
first run over a copy it writes an *observed* manifest (counts, ordered ids, labels, file and
pixel digests) to :func:`manifests.observed_dir`; later runs compare against it, and against
observed manifests committed under ``replicate/data/manifests/<benchmark>/observed/``.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..benchmarks import all_benchmarks, benchmark_of_task
from . import DataError, fgvc, vtab
from . import manifests as M
from .tasks import FGVC_CLASSES, VTAB_TASKS
from .vtab_tasks import VTAB_SPLITS, get_task

SHOWN = 5  # examples listed per problem


@dataclass
class Finding:
    #: error | warning | ok | info | skip
    level: str
    subject: str
    message: str
    fix: str = ""


def _examples(items: Sequence[str]) -> str:
    items = list(items)
    more = f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(map(str, items[:SHOWN])) + more


def _content_digests(paths: Sequence[str], subject: str, out: List[Finding],
                     cache: Optional[Dict[str, tuple]] = None):
    """(files_sha256, pixels_sha256) over files in order; corrupted files become findings.
    ``cache`` maps path -> (file digest, image digest) across the splits of one task."""
    cache = {} if cache is None else cache
    files, pix, bad = [], [], []
    for p in paths:
        if p not in cache:
            try:
                cache[p] = (fgvc.file_sha256(Path(p)),
                            M.image_digest(np.asarray(fgvc.read_image(p), dtype=np.uint8)))
            except (DataError, OSError) as e:
                why = str(e).split("(")[1].split(")")[0] if isinstance(e, DataError) and "(" in \
                    str(e) else str(e)
                bad.append(f"{p} ({why})")
                cache[p] = ("", "")
        files.append(cache[p][0])
        pix.append(cache[p][1])
    if bad:
        out.append(Finding("error", subject, f"{len(bad)} image files cannot be decoded: "
                           f"{_examples(bad)}", "re-download/re-export these files"))
    return M.digest_lines(files), M.digest_lines(pix)


def _compare_ids(subject: str, expected: dict, got: dict, out: List[Finding], fix: str,
                 exp_ids: Optional[Sequence[str]] = None,
                 got_ids: Optional[Sequence[str]] = None) -> bool:
    """Count / ordered ids / entries against a manifest entry; True when all agree."""
    ok = True
    if got["count"] != expected["count"]:
        out.append(Finding("error", subject, f"wrong count: {got['count']} samples, expected "
                           f"{expected['count']}", fix))
        ok = False
    if got["ids_sha256"] != expected["ids_sha256"]:
        ok = False
        if got["ids_sorted_sha256"] == expected["ids_sorted_sha256"]:
            out.append(Finding("error", subject, "changed ordering: the same samples in another "
                               "order (ids digest differs, sorted ids digest matches)", fix))
        else:
            detail = ""
            if exp_ids is not None and got_ids is not None:
                missing = sorted(set(exp_ids) - set(got_ids))
                extra = sorted(set(got_ids) - set(exp_ids))
                detail = (f": missing {_examples(missing) or '-'}; "
                          f"unexpected {_examples(extra) or '-'}")
            out.append(Finding("error", subject, f"different samples than the manifest{detail}",
                               fix))
    elif "entries_sha256" in expected and "entries_sha256" in got and \
            got["entries_sha256"] != expected["entries_sha256"]:
        out.append(Finding("error", subject, "same samples, different labels (entries digest "
                           "differs)", fix))
        ok = False
    return ok


_OBSERVED_KEYS = ("count", "ids_sha256", "entries_sha256", "files_sha256", "pixels_sha256",
                  "label_counts")


def _diff_observed(a: dict, b: dict) -> List[str]:
    out = []
    for split in sorted(set(a.get("splits", {})) & set(b.get("splits", {}))):
        sa, sb = a["splits"][split], b["splits"][split]
        for k in _OBSERVED_KEYS:
            if k in sa and k in sb and sa[k] != sb[k]:
                out.append(f"{split}.{k}")
    return out


def _handle_observed(benchmark: str, task: str, fmt: str, observed: dict,
                     manifest_dir: Optional[str], write: bool, out: List[Finding]) -> None:
    """Compare with the committed and the user's observed manifests; write/extend the user's
    one only when the copy has no errors (a broken copy never becomes the reference)."""
    subject = f"{benchmark}/{task}"
    write = write and not any(f.level == "error" for f in out)
    shared = M.committed_observed(benchmark, task, fmt)
    if shared is not None:
        diff = _diff_observed(shared, observed)
        if diff:
            out.append(Finding("error", subject, f"differs from the copy recorded in "
                               f"replicate/data/manifests/{benchmark}/observed/{task}.{fmt}.json: "
                               f"{', '.join(diff)}", "re-export / re-download the task"))
        else:
            out.append(Finding("ok", subject, "matches the committed observed manifest"))
    path = M.observed_path(benchmark, task, fmt, manifest_dir)
    if path.is_file():
        prev = json.loads(path.read_text())
        diff = _diff_observed(prev, observed)
        if diff:
            out.append(Finding("error", subject, f"your copy changed since {prev.get('written')} "
                               f"(observed manifest '{path}'): {', '.join(diff)}",
                               "restore the data, or delete that file to accept the new copy"))
            return
        merged = copy.deepcopy(prev)
        for split, d in observed["splits"].items():  # add digests a fast run did not compute
            merged.setdefault("splits", {}).setdefault(split, {}).update(
                {k: v for k, v in d.items() if k not in merged["splits"][split]})
        if write and merged != prev:
            M.write_json(path, merged)
        out.append(Finding("ok", subject, f"matches your observed manifest '{path}'"))
    elif write:
        M.write_json(path, observed)
        out.append(Finding("info", subject, f"first use: wrote the observed manifest '{path}' "
                           f"(commit it as replicate/data/manifests/{benchmark}/observed/"
                           f"{task}.{fmt}.json so the next user can compare)"))
    elif any(f.level == "error" for f in out):
        out.append(Finding("info", subject, f"observed manifest not written: fix the errors "
                           f"first ('{path}')"))


def _observed_doc(benchmark: str, task: str, fmt: str, root: Path, splits: Dict[str, dict]) -> dict:
    from .. import __version__
    return {"schema": M.SCHEMA, "benchmark": benchmark, "task": task, "format": fmt,
            "root": str(root), "tool": f"vpt-replicate {__version__}",
            "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "splits": splits}


# --------------------------------------------------------------------------- FGVC
def verify_fgvc(root: Path, task: str, content: bool = False,
                manifest_dir: Optional[str] = None, write: bool = True) -> List[Finding]:
    ds = fgvc.get_dataset(task)
    subject = f"fgvc/{task}"
    out: List[Finding] = []
    m = M.load_committed("fgvc", task)
    sdir = fgvc.splits_dir(root, ds)
    missing = [str(sdir / f"{s}.json") for s in fgvc.FILE_SPLITS
               if not (sdir / f"{s}.json").is_file()]
    if missing:
        out.append(Finding("error", subject, f"split files missing: {_examples(missing)}",
                           fgvc.SPLIT_FIX))
        return out
    for s in fgvc.FILE_SPLITS:
        got = fgvc.file_sha256(sdir / f"{s}.json")
        if got != m["split_files"][s]["sha256"]:
            out.append(Finding("error", f"{subject} {s}", f"'{sdir / (s + '.json')}' differs from "
                               f"the pinned file (sha256 {got[:12]}... vs "
                               f"{m['split_files'][s]['sha256'][:12]}...)", fgvc.SPLIT_FIX))
    try:
        files = fgvc.read_split_files(sdir)
    except DataError as e:
        out.append(Finding("error", subject, str(e), fgvc.SPLIT_FIX))
        return out
    classes = fgvc.class_ids(files)
    want = m["class_ids"]
    if classes != want:
        lost = [c for c in want if c not in set(classes)]
        extra = [c for c in classes if c not in set(want)]
        out.append(Finding("error", subject, f"wrong label set: {len(classes)} class ids, expected "
                           f"{len(want)}; missing {_examples(lost) or '-'}; unexpected "
                           f"{_examples(extra) or '-'}", fgvc.SPLIT_FIX))
    labels = {c: i for i, c in enumerate(classes)}
    try:
        images = fgvc.image_dir(root, ds)
    except DataError as e:
        out.append(Finding("error", subject, str(e).split(". Download")[0],
                           f"download {ds.download}"))
        images = None
    observed = {}
    for split in ("train", "val", "test", "trainval"):
        entries = fgvc.split_entries(files, split, labels)
        ids = [k for k, _ in entries]
        got = M.id_digests(ids, [y for _, y in entries])
        _compare_ids(f"{subject} {split}", m["splits"][split], got, out, fgvc.SPLIT_FIX)
        if images is not None and split != "trainval":
            paths = [str(images / k) for k in ids]
            absent = [p for p in paths if not Path(p).is_file()]
            if absent:
                out.append(Finding("error", f"{subject} {split}", f"{len(absent)} of {len(paths)} "
                                   f"image files missing: {_examples(absent)}",
                                   f"download/extract {ds.download}"))
            elif content:
                got["files_sha256"], got["pixels_sha256"] = _content_digests(
                    paths, f"{subject} {split}", out)
        observed[split] = got
    if not any(f.level == "error" for f in out):
        out.append(Finding("ok", subject, f"split files match the pins; "
                           f"{sum(len(f) for f in files.values())} images present"
                           + ("; all decode" if content else "")))
    if content:
        _handle_observed("fgvc", task, "vpt-json", _observed_doc("fgvc", task, "vpt-json",
                         root, observed), manifest_dir, write, out)
    return out


# --------------------------------------------------------------------------- VTAB-1k
def verify_vtab(root: Path, task: str, fmt: str = "auto", content: bool = True,
                manifest_dir: Optional[str] = None, write: bool = True) -> List[Finding]:
    t = get_task(task)
    subject = f"vtab1k/{task}"
    out: List[Finding] = []
    task_dir, kind = vtab.locate(root, task, fmt)  # DataError: caller reports "not found"
    fix = f"{vtab.export_fix(task)}" if kind == "replicate" else \
        f"re-download the NOAH copy, or better {vtab.export_fix(task)}"
    if kind == "noah":
        out.append(Finding("warning", subject, f"'{task_dir}' is a NOAH-style copy: lossy JPEGs, "
                           f"pixels differ from TFDS's", vtab.export_fix(task)))
    m = M.load_committed("vtab1k", task)
    export = None
    if kind == "replicate":
        try:
            export = vtab.read_export_manifest(task_dir, task)
        except DataError as e:
            out.append(Finding("error", subject, str(e), fix))
        if export and export.get("tfds", {}).get("version") != t.version:
            out.append(Finding("warning", subject, f"exported from {t.builder} "
                               f"{export['tfds'].get('version')}, VPT used {t.version}", fix))
    lists = {}
    for name in VTAB_SPLITS:
        try:
            lists[name] = vtab.read_list(task_dir, name, t.num_classes)
        except DataError as e:
            out.append(Finding("error", f"{subject} {name}", str(e), fix))
    observed: Dict[str, dict] = {}
    cache: Dict[str, tuple] = {}
    for name, entries in lists.items():
        sub = f"{subject} {name}"
        ids = [vtab.sample_id(r, kind) for r, _ in entries]
        labels = [y for _, y in entries]
        got = M.id_digests(ids, labels)
        counts = np.bincount(labels, minlength=t.num_classes).tolist()
        got["label_counts"] = counts
        if kind == "replicate":
            rule_ids = t.sample_ids(name)
            _compare_ids(sub, m["splits"][name], got, out, fix, rule_ids, ids)
            if export and name in export.get("splits", {}):
                e = export["splits"][name]
                if e.get("entries_sha256") != got["entries_sha256"]:
                    out.append(Finding("error", sub, f"'{task_dir / (name + '.txt')}' was changed "
                                       f"after the export (entries digest differs from "
                                       f"manifest.json)", fix))
                if e.get("label_counts") not in (None, counts):
                    out.append(Finding("error", sub, "wrong label set: label counts differ from "
                                       "the export's manifest.json", fix))
        elif got["count"] != m["splits"][name]["count"]:
            out.append(Finding("error", sub, f"wrong count: {got['count']} samples, expected "
                               f"{m['splits'][name]['count']}", fix))
        paths = [str(task_dir / r) for r, _ in entries]
        absent = [p for p in paths if not Path(p).is_file()]
        if absent:
            out.append(Finding("error", sub, f"{len(absent)} of {len(paths)} image files missing: "
                               f"{_examples(absent)}", fix))
        elif content:
            got["files_sha256"], got["pixels_sha256"] = _content_digests(paths, sub, out, cache)
            want = (export or {}).get("splits", {}).get(name, {}).get("pixels_sha256")
            if want and want != got["pixels_sha256"]:
                out.append(Finding("error", sub, "image pixels differ from the export's "
                                   "manifest.json (files changed after the export)", fix))
        observed[name] = got
    if {"train800", "val200", "train800val200"} <= set(lists):
        both = lists["train800"] + lists["val200"]
        same = ([y for _, y in both] == [y for _, y in lists["train800val200"]])
        if kind == "replicate":
            same = same and both == lists["train800val200"]
        elif content and all("pixels_sha256" in observed.get(n, {})
                             for n in ("train800", "val200", "train800val200")):
            pix = [cache[str(task_dir / r)][1] for r, _ in both]  # NOAH: separate files
            same = same and M.digest_lines(pix) == observed["train800val200"]["pixels_sha256"]
        if not same:
            out.append(Finding("error", f"{subject} train800val200", "is not train800 followed "
                               "by val200 (labels or images differ)", fix))
    if not any(f.level == "error" for f in out):
        out.append(Finding("ok", subject, f"{kind} copy at '{task_dir}': counts, ids and labels "
                           f"agree" + ("; all images decode" if content else "")))
    _handle_observed("vtab1k", task, kind, _observed_doc("vtab1k", task, kind, root, observed),
                     manifest_dir, write, out)
    return out


# --------------------------------------------------------------------------- driver
def verify(root: str, benchmark: Optional[str] = None, task: Optional[str] = None,
           fmt: str = "auto", vtab_content: bool = True, fgvc_content: bool = False,
           manifest_dir: Optional[str] = None, write: bool = True) -> List[Finding]:
    """Check every dataset found under ``root`` (or the one asked for).

    ``*_content``: decode every image (corrupted files, pixel digests, observed manifest);
    VTAB-1k by default, FGVC only on request (tens of thousands of JPEGs)."""
    base = fgvc.data_root(root)
    if benchmark is not None and benchmark not in VERIFIERS:
        raise DataError(f"unknown benchmark '{benchmark}' ({', '.join(VERIFIERS)})")
    if task is not None and benchmark is None:
        benchmark = benchmark_of_task(task, among=list(VERIFIERS))
        if benchmark is None:
            raise DataError(f"unknown task '{task}'; " + "; ".join(
                f"{b.title}: {', '.join(b.tasks)}" for b in all_benchmarks(published=True)
                if b.name in VERIFIERS and len(b.tasks) > 1))
    explicit = benchmark is not None
    opts = dict(fmt=fmt, vtab_content=vtab_content, fgvc_content=fgvc_content,
                manifest_dir=manifest_dir, write=write)
    out: List[Finding] = []
    for name, check in VERIFIERS.items():
        if benchmark is None or benchmark == name:
            out += check(base, task, explicit, **opts)
    return out


def _verify_fgvc_all(base: Path, task: Optional[str], explicit: bool, *, fgvc_content: bool,
                     manifest_dir: Optional[str], write: bool, **_) -> List[Finding]:
    out: List[Finding] = []
    for t in [task] if task else list(FGVC_CLASSES):
        ds = fgvc.get_dataset(t)
        if not explicit and not (base / ds.folder).exists() and \
                not fgvc.splits_dir(base, ds).exists():
            out.append(Finding("skip", f"fgvc/{t}", f"not found under '{base}'"))
            continue
        out += verify_fgvc(base, t, content=fgvc_content, manifest_dir=manifest_dir,
                           write=write)
    return out


def _verify_vtab_all(base: Path, task: Optional[str], explicit: bool, *, fmt: str,
                     vtab_content: bool, manifest_dir: Optional[str], write: bool,
                     **_) -> List[Finding]:
    out: List[Finding] = []
    for t in [task] if task else list(VTAB_TASKS):
        try:
            out += verify_vtab(base, t, fmt, content=vtab_content,
                               manifest_dir=manifest_dir, write=write)
        except DataError as e:
            if not explicit:
                out.append(Finding("skip", f"vtab1k/{t}", f"not found under '{base}'"))
                continue
            out.append(Finding("error", f"vtab1k/{t}",
                               str(e).split("\nFix:")[0].replace("\n  ", " "),
                               vtab.export_fix(t)))
    return out


def _verify_ade20k(base: Path, task: Optional[str], explicit: bool, **_) -> List[Finding]:
    from .ade20k import FOLDER, verify_ade20k
    ade = base / FOLDER
    if not explicit and not ade.exists():
        return [Finding("skip", "ade20k", f"not found under '{base}'")]
    problems = verify_ade20k(ade)
    return [Finding("error", "ade20k", p) for p in problems] or \
        [Finding("ok", "ade20k", f"{ade}: 20,210 train / 2,000 val images with annotations")]


#: benchmark -> the check of its data root (each benchmark's own files and layout)
VERIFIERS = {"fgvc": _verify_fgvc_all, "vtab1k": _verify_vtab_all, "ade20k": _verify_ade20k}


def report(findings: Sequence[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"[{f.level.upper():7s}] {f.subject}: {f.message}")
        if f.fix and f.level in ("error", "warning"):
            lines.append(f"          fix: {f.fix}")
    n_err = sum(f.level == "error" for f in findings)
    lines.append(f"{n_err} error(s)" if n_err else "no errors")
    return "\n".join(lines)
