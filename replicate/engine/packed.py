"""Packed sweeps: the runs of a tuning grid train together in one process.

The runs of a grid (``sweep.grid_runs``) share backbone, task, method and batch schedule and
differ in lr / weight decay (and possibly seed).  Here they share ONE frozen backbone: at every
block the K runs' token sequences are concatenated along the batch axis, run through the
frozen block once, and split back (the block's weights are the same for all of them, and every
operation in a ViT block is per sample).  Everything a run owns stays its own: prompts, gates,
head, optimizer, lr schedule, seed, data order, prompt-dropout masks, ``last.ckpt`` and
``record.json`` in the engine's format (engine/train.py's helpers build and write them).

Equal to the runs alone (tests/test_packed.py, CPU fp32: trainable weights within 1e-5,
identical top-1):

* data order: each run iterates the engine's ``Batches.epoch(seed, epoch)``; runs with the same
  seed share one iterator (same batches), so a DataLoader split is read once for all of them;
* randomness: the engine seeds the global RNG with ``seed_everything(seed, epoch)`` at every
  epoch and the methods draw their dropout masks from it.  Here every run keeps its own RNG
  state (CPU and CUDA), swapped in around its own hooks, so it consumes exactly the stream it
  would consume alone;
* init: ``build_model`` seeds the backbone with a fixed seed and each run's prompts/head with
  its own seed, whether the backbone is built or shared;
* gradients: the loss is the sum of the runs' losses; each run's parameters get exactly their
  own loss's gradient (the K runs share no trainable tensor and no cross-sample operation).

A run whose loss turns non-finite fails alone (``failed.json``, as in the engine); the rest go
on.  ``should_stop`` (preemption) is polled after each epoch; every run writes its checkpoint
when the engine's :class:`~.train.CheckpointPolicy` says so and always before the pack stops.
:func:`check_packable` also refuses, with the counted estimate, a pack that would not fit the
device's memory (:func:`check_pack_memory`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn.functional as F

from .. import data, methods
from .lock import run_lock
from .packing import MAY_DIFFER, flat_config
from .run import Run, atomic_write_json, read_record
from .train import (Batches, EpochBook, NonFiniteLoss, RunLog, _execute_locked, build_model,
                    build_optimizer, build_scheduler, end_diverged, execute, load_checkpoint,
                    make_record, normalizer, pick_device, resolve_precision, save_checkpoint,
                    seed_everything, write_failure)

class PackError(ValueError):
    """The runs cannot train as one pack; the message names the key that differs."""


class PackedRunsFailed(RuntimeError):
    """Some runs of a pack failed (each has its failed.json); the others finished.

    ``records`` is what :func:`execute_packed` would have returned (None for the failed runs),
    ``failures`` maps run_id -> the error message."""

    def __init__(self, records: List[Optional[dict]], failures: Dict[str, str]):
        self.records, self.failures = records, failures
        lines = [f"{len(failures)} of {len(records)} packed runs failed:"]
        lines += [f"  {rid}: {err}" for rid, err in failures.items()]
        super().__init__("\n".join(lines))


# ------------------------------------------------------------------ compatibility
def check_packable(runs: Sequence[Run], device_memory: Optional[int] = None) -> None:
    """Raise :class:`PackError` unless ``runs`` can share one backbone and batch schedule, and
    fit the device together (:func:`check_pack_memory`; ``device_memory`` in bytes, default:
    the runs' CUDA device, no limit on a CPU).  The config rule is ``engine.packing``'s
    (:data:`MAY_DIFFER`), which ``launch.make_packs`` groups by."""
    if not runs:
        return
    ref = runs[0]
    mtype = ref.experiment.method.type
    cls = methods.get(mtype)
    if not cls.packable:
        why = "trains the backbone" if cls.trains_backbone else "is not packable"
        raise PackError(f"method '{mtype}' {why}: its runs cannot share one; run "
                        "them one by one (pack_size 1)")
    base = flat_config(ref.experiment.to_dict())
    for r in runs[1:]:
        if (r.train_split, tuple(r.eval_splits)) != (ref.train_split, tuple(ref.eval_splits)):
            raise PackError(f"run {r.run_id} trains/evaluates on {r.train_split}/{r.eval_splits}, "
                            f"run {ref.run_id} on {ref.train_split}/{ref.eval_splits}: pack only "
                            "runs of one stage (sweep.grid_runs)")
        other = flat_config(r.experiment.to_dict())
        for key in sorted(set(base) | set(other)):
            if key in MAY_DIFFER:
                continue
            if base.get(key) != other.get(key):
                raise PackError(
                    f"run {r.run_id} differs from {ref.run_id} in '{key}' ({other.get(key)!r} vs "
                    f"{base.get(key)!r}); a pack shares backbone, data, method and batch schedule "
                    f"and may differ only in {', '.join(MAY_DIFFER[5:])} and seed")
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise PackError("the same run appears twice in a pack")
    check_pack_memory(runs, device_memory if device_memory is not None else
                      _device_memory(ref.experiment.train.device))


#: share of the device memory a pack may plan for (the rest: CUDA context, allocator
#: fragmentation, kernel workspaces, evaluation batches)
PACK_MEMORY_FRACTION = 0.85


def _device_memory(want: str) -> Optional[int]:
    device = pick_device(want)
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_properties(device).total_memory


def pack_memory(runs: Sequence[Run]) -> Dict[str, int]:
    """Counted device memory of a pack's training step (``engine/cost.step_memory`` at the
    runs' batch size, float32, fused attention): per-run activations and trainable state
    (weights, gradients, momentum, one spare copy) times the runs, plus the shared backbone."""
    from .cost import step_memory

    e = runs[0].experiment
    m = step_memory(e.backbone.name, e.method.type, dict(e.method.options),
                    data.num_classes(e.data), e.optim.batch_size)
    per_run = m["activations"] + 4 * m["trainable"]
    return {"per_run": per_run, "shared": m["frozen"], "total": len(runs) * per_run + m["frozen"]}


def check_pack_memory(runs: Sequence[Run], device_memory: Optional[int]) -> None:
    """Refuse (:class:`PackError`, with the estimate) a pack whose counted memory exceeds
    :data:`PACK_MEMORY_FRACTION` of ``device_memory`` bytes (None: no limit)."""
    if len(runs) < 2 or not device_memory:
        return
    est = pack_memory(runs)
    budget = PACK_MEMORY_FRACTION * device_memory
    if est["total"] > budget:
        fit = max(1, int((budget - est["shared"]) // max(est["per_run"], 1)))
        gib = 2 ** 30
        raise PackError(
            f"a pack of {len(runs)} runs needs about {est['total'] / gib:.1f} GiB of device memory "
            f"({len(runs)} x {est['per_run'] / gib:.2f} GiB of activations and optimizer state at "
            f"batch {runs[0].experiment.optim.batch_size} + {est['shared'] / gib:.2f} GiB shared "
            f"backbone, counted in float32), more than {PACK_MEMORY_FRACTION:.0%} of the "
            f"device's {device_memory / gib:.0f} GiB: use packs of at most {fit} runs (--pack "
            f"{fit})")


# ------------------------------------------------------------------ per-run RNG streams
class RngStreams:
    """One global-RNG state per run, swapped in around that run's hooks."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.states: Dict[int, tuple] = {}

    def _get(self) -> tuple:
        return (torch.get_rng_state(),
                torch.cuda.get_rng_state(self.device) if self.cuda else None)

    def seed(self, k: int, seed: int, epoch: int) -> None:
        """Run ``k``'s stream = the engine's global RNG after ``seed_everything(seed, epoch)``."""
        seed_everything(seed, epoch)
        self.states[k] = self._get()

    @contextlib.contextmanager
    def use(self, k: int) -> Iterator[None]:
        cpu, cuda = self.states[k]
        torch.set_rng_state(cpu)
        if self.cuda:
            torch.cuda.set_rng_state(cuda, self.device)
        try:
            yield
        finally:
            self.states[k] = self._get()


@contextlib.contextmanager
def _no_swap(k: int) -> Iterator[None]:
    yield


# ------------------------------------------------------------------ the packed forward
def packed_forward(models: Sequence[methods.PromptedModel], images: Sequence[torch.Tensor],
                   rng: Optional[RngStreams] = None, block: Optional[Callable] = None
                   ) -> List[torch.Tensor]:
    """Logits of ``models[k](images[k])`` for every k, the frozen blocks run once on the
    concatenated token sequences.  All models share one adapter.  ``images`` entries that are
    the same tensor object are embedded once.  The block loop is ``methods.run_blocks``, the
    one ``PromptedModel.forward_tokens`` uses (each run's hooks see only its own slice, under
    its own RNG stream)."""
    a = models[0].adapter
    use = rng.use if rng is not None else _no_swap
    n_extra = {m.method.num_extra for m in models}
    if len(n_extra) != 1 or any(m.adapter is not a for m in models):
        raise PackError("packed models must share one adapter and the same number of extra tokens")
    if any(not m.method.packable for m in models):
        raise PackError("a method that trains the backbone (not packable) cannot share it")
    embedded: Dict[int, torch.Tensor] = {}
    xs = []
    for k, (m, img) in enumerate(zip(models, images)):
        with use(k):
            m.method.prepare_step()
            if id(img) not in embedded:
                embedded[id(img)] = a.embed(img)
            x = m.method.insert(embedded[id(img)])
            m.method.begin(x)
        xs.append(x)
    xs = methods.run_blocks(a, [m.method for m in models], xs, block, use)
    return [m.method.head(m.method.features(a, x)) for m, x in zip(models, xs)]


def compiled_block(adapter) -> Callable:
    """``adapter.block`` under torch.compile (train.compile in a pack): the per-run hooks stay
    eager (they swap RNG states); the frozen block, where the FLOPs are, is compiled once per
    block index and shape."""
    import torch._dynamo

    from .train import compile_sdpa_guard, prepare_compile

    # one cache entry per block index, batch shape (the last batch is smaller) and grad mode
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit,
                                                8 * adapter.num_blocks)
    prepare_compile()
    compiled = torch.compile(adapter.block, dynamic=False)
    device = next(adapter.parameters()).device

    def block(*args):
        with compile_sdpa_guard(device):
            return compiled(*args)

    return block


@torch.no_grad()
def packed_evaluate(models: Sequence[methods.PromptedModel], batches: Batches, norm,
                    amp_dtype: Optional[torch.dtype], block: Optional[Callable] = None
                    ) -> List[Dict[str, float]]:
    """``engine.evaluate`` for every model, each eval batch embedded once for all of them."""
    for m in models:
        m.train(False)
    dev = batches.device
    correct = torch.zeros(len(models), dtype=torch.long, device=dev)
    loss_sum = torch.zeros(len(models), dtype=torch.float64, device=dev)
    n = 0
    for x, y in batches.epoch(0, 0):
        xn = norm(x)
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = packed_forward(models, [xn] * len(models), None, block)
        for k, lg in enumerate(logits):
            loss_sum[k] += F.cross_entropy(lg.float(), y, reduction="sum").double()
            correct[k] += (lg.argmax(dim=1) == y).sum()
        n += y.numel()
    c, ls = correct.tolist(), loss_sum.tolist()  # one host sync per evaluation
    return [{"top1": 100.0 * c[k] / max(n, 1), "loss": ls[k] / max(n, 1), "n": n}
            for k in range(len(models))]


# ------------------------------------------------------------------ the pack
@dataclass
class _Member:
    run: Run
    log: RunLog
    model: methods.PromptedModel = None  # type: ignore[assignment]
    opt: torch.optim.Optimizer = None  # type: ignore[assignment]
    sched: object = None
    start_epoch: int = 0
    history: list = field(default_factory=list)
    failed: Optional[str] = None
    #: a search run whose loss turned non-finite: its terminal record (engine.end_diverged)
    diverged: Optional[dict] = None
    #: wall time of earlier attempts (from the checkpoint), so a record keeps the total
    earlier_wall: float = 0.0

    @property
    def ckpt(self) -> Path:
        return self.run.run_dir / "last.ckpt"


def execute_packed(runs: Sequence[Run], echo: Callable[[str], None] = print,
                   should_stop: Callable[[], bool] = lambda: False) -> List[Optional[dict]]:
    """Train ``runs`` (one grid: see :func:`check_packable`) together; return their records in
    order.  Idempotent like ``engine.execute``: finished runs return their record, interrupted
    ones resume from their own ``last.ckpt``.  A preempted pack (``should_stop``) saves every
    run and returns None for the unfinished ones.  Runs that fail get their ``failed.json``;
    the others finish, then :class:`PackedRunsFailed` is raised (its ``records`` holds them).
    """
    runs = list(runs)
    check_packable(runs)
    records: List[Optional[dict]] = [read_record(r.run_dir) for r in runs]
    todo = [i for i, rec in enumerate(records) if rec is None]
    if len(todo) == 1:  # nothing to share: the engine itself
        records[todo[0]] = execute(runs[todo[0]], echo, should_stop)
        return records
    if not todo:
        return records
    with contextlib.ExitStack() as locks:  # one trainer per run (engine/lock.py)
        # every process takes a pack's locks in the same order: two packs cannot deadlock
        for i in sorted(todo, key=lambda i: str(runs[i].run_dir)):
            locks.enter_context(run_lock(runs[i].run_dir, echo=echo))
        for i in todo:  # finished by a process this one waited for
            records[i] = read_record(runs[i].run_dir)
        todo = [i for i in todo if records[i] is None]
        if len(todo) <= 1:
            for i in todo:
                records[i] = _execute_locked(runs[i], echo, should_stop)
            return records
        return _execute_packed_locked(runs, records, todo, echo, should_stop)


def _execute_packed_locked(runs: List[Run], records: List[Optional[dict]], todo: List[int],
                           echo: Callable[[str], None], should_stop) -> List[Optional[dict]]:
    members = []
    for i in todo:
        r = runs[i]
        r.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(r.run_dir / "config.json", r.to_dict())
        members.append(_Member(r, RunLog(r.run_dir, echo)))
    try:
        out = _train_packed(members, should_stop)
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):  # stopped, not failed: resumable
            raise
        for m in members:
            if m.failed is None:
                write_failure(m.run, e, m.log)
        raise
    failures = {}
    for i, m in zip(todo, members):
        rec = out.get(m.run.run_id)
        if rec is not None:
            atomic_write_json(m.run.run_dir / "record.json", rec)
            (m.run.run_dir / "failed.json").unlink(missing_ok=True)
        records[i] = rec
        if m.failed is not None:
            failures[m.run.run_id] = m.failed
    if failures:
        raise PackedRunsFailed(records, failures)
    return records


def _train_packed(members: List[_Member], should_stop) -> Dict[str, Optional[dict]]:
    run0 = members[0].run
    exp = run0.experiment
    o, t = exp.optim, exp.train
    device = pick_device(t.device)
    precision, amp_dtype = resolve_precision(t, device, exp.protocol)
    model0, entry = build_model(run0, device)
    for m in members:
        m.model = model0 if m is members[0] else build_model(m.run, device, model0.adapter)[0]
        m.opt = build_optimizer(m.model, m.run)
        m.sched = build_scheduler(m.opt, m.run)
    adapter = model0.adapter
    norm = normalizer(entry, device)
    train_split = data.load(exp.data, run0.train_split, train=True)
    n_workers = exp.data.num_workers
    train_b = Batches(train_split, o.batch_size, device, True, n_workers)
    eval_b = {s: Batches(data.load(exp.data, s, train=False), t.eval_batch_size or 2 * o.batch_size,
                         device, False, n_workers) for s in run0.eval_splits}
    block = compiled_block(adapter) if t.compile else adapter.block
    for m in members:
        if m.ckpt.is_file():
            ck_info: dict = {}
            m.start_epoch, m.history = load_checkpoint(m.ckpt, m.model, m.opt, device, ck_info)
            m.earlier_wall = ck_info["wall_time_s"]
            m.log(f"resumed from {m.ckpt} at epoch {m.start_epoch}/{o.epochs} (packed)")
        e = m.run.experiment
        m.log(f"run {m.run.run_id}: {e.method.type} on {e.backbone.name}, {e.data.benchmark}/"
              f"{e.data.task} train={m.run.train_split}({len(train_split)}) seed={m.run.seed} "
              f"lr={e.optim.lr} wd={e.optim.weight_decay} bs={o.batch_size} epochs={o.epochs} "
              f"device={device} {precision} trainable={m.model.num_trainable():,} "
              f"packed with {len(members) - 1} other run(s){' SMOKE' if exp.smoke else ''}")
    first_eval = run0.eval_splits[0] if run0.eval_splits else None
    t_start = time.time()
    book = EpochBook(run0)
    for epoch in range(min(m.start_epoch for m in members), o.epochs):
        active = [m for m in members if m.failed is None and m.diverged is None
                  and m.start_epoch <= epoch]
        if not active:
            continue
        rng = RngStreams(device)
        for k, m in enumerate(active):
            m.sched.step(epoch)
            rng.seed(k, m.run.seed, epoch)
            m.model.train(True)
        t0 = time.time()
        seen, loss_sum = _train_epoch(active, train_b, norm, amp_dtype, rng, block, epoch,
                                      t.max_steps_per_epoch)
        means = (loss_sum / max(seen, 1)).tolist()  # one host sync per epoch for the pack
        dt = time.time() - t0
        evals = [None] * len(active)
        if book.eval_due(epoch):
            evals = packed_evaluate([m.model for m in active], eval_b[first_eval], norm,
                                    amp_dtype, block)
        why, write = book.poll(epoch, should_stop)
        for k, m in enumerate(active):
            if not math.isfinite(means[k]):
                e = book.non_finite(epoch, means[k], m.run.experiment.optim.lr)
                try:
                    raise e  # end_diverged/write_failure record the traceback of the exception handled
                except NonFiniteLoss:
                    m.diverged = end_diverged(m.run, e, m.log)
                    if m.diverged is None:
                        m.failed = f"{type(e).__name__}: {e}"
                continue
            m.history.append(book.entry(epoch, means[k], m.opt.param_groups[0]["lr"], seen, dt,
                                        evals[k]))
            m.log(book.line(m.history[-1], f" (x{len(active)} packed)"))
            if write:
                save_checkpoint(m.ckpt, m.model, m.opt, epoch, m.history, m.run.run_id,
                                m.earlier_wall + (time.time() - t_start) / len(members))
        if write:
            book.written()
        if why:
            for m in members:
                if m.failed is None:
                    m.log(book.stop_line(epoch, why, "here"))
            return {}
    done = [m for m in members if m.failed is None and m.diverged is None]
    evals_by_split: List[Dict[str, dict]] = [{} for _ in done]
    for s, b in eval_b.items():
        for k, ev in enumerate(packed_evaluate([m.model for m in done], b, norm, amp_dtype,
                                               block)):
            evals_by_split[k][s] = ev
    wall = (time.time() - t_start) / max(len(done), 1)  # each run's share of the pack's time
    out: Dict[str, Optional[dict]] = {}
    for m, evs in zip(done, evals_by_split):
        met = book.final(evs, m.history)
        m.log(book.final_line(met, f" (packed x{len(done)})"))
        run = dataclasses.replace(m.run, tags={**m.run.tags, "packed": len(members)})
        out[m.run.run_id] = make_record(run, m.model, entry, met, m.history, device, precision,
                                        m.earlier_wall + wall)
    out.update({m.run.run_id: m.diverged for m in members if m.diverged is not None})
    return out


def packed_step(models: Sequence[methods.PromptedModel], opts: Sequence[torch.optim.Optimizer],
                images: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                amp_dtype: Optional[torch.dtype], rng: Optional[RngStreams] = None,
                block: Optional[Callable] = None) -> torch.Tensor:
    """One optimizer step of every model (``engine.train.train_step`` for K runs at once);
    returns the K detached losses (no host sync).  ``images`` are normalised."""
    dev = images[0].device
    with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = packed_forward(models, images, rng, block)
    losses = []
    for m, lg, y in zip(models, logits, labels):
        loss = F.cross_entropy(lg.float(), y)
        extra = m.method.extra_loss(y)  # e.g. VPTM's instance-instance term
        if extra is not None:
            loss = loss + extra
        losses.append(loss)
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    losses_t = torch.stack(losses)
    losses_t.sum().backward()  # run k's parameters receive exactly d loss_k
    for opt in opts:
        opt.step()
    return losses_t.detach()


def _train_epoch(active: List[_Member], train_b: Batches, norm, amp_dtype, rng: RngStreams,
                 block: Callable, epoch: int, max_steps: Optional[int]):
    """One epoch of every active run; returns (images per run, loss sums on the device)."""
    device = train_b.device
    seeds = sorted({m.run.seed for m in active})
    iters = {s: train_b.epoch(s, epoch) for s in seeds}  # runs with one seed share batches
    loss_sum = torch.zeros(len(active), device=device)
    seen = 0
    step = 0
    while max_steps is None or step < max_steps:
        batch = {s: next(it, None) for s, it in iters.items()}
        if any(b is None for b in batch.values()):
            break
        xs = {s: norm(x) for s, (x, _) in batch.items()}
        losses_t = packed_step([m.model for m in active], [m.opt for m in active],
                               [xs[m.run.seed] for m in active],
                               [batch[m.run.seed][1] for m in active], amp_dtype, rng, block)
        n = next(iter(batch.values()))[1].numel()
        loss_sum += losses_t.detach() * n
        seen += n
        step += 1
    return seen, loss_sum


__all__ = ["execute_packed", "check_packable", "packed_forward", "packed_step", "packed_evaluate",
           "PackError", "PackedRunsFailed", "RngStreams"]
