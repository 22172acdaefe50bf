"""Train and evaluate one :class:`Run`; write its run directory.

Matches the official trainer (KMnP/vpt and GatedPromptTuning ``src/engine/trainer.py``,
``src/solver/*``) where it defines a number: SGD with momentum, weight decay on every trainable
tensor but the head bias, warmup + half-cosine stepped once per *epoch* (epoch 0 has lr 0),
shuffled training batches without drop_last, the final model is the last epoch's.
Differences are engineering only: per-epoch reseeding (so a resumed run equals an uninterrupted
one), bf16 autocast on CUDA, on-device normalisation, metrics accumulated on the device.
"""
from __future__ import annotations

import atexit
import contextlib
import math
import os
import platform
import random
import signal
import subprocess
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import backbones, data, methods
from ..errors import unwrap_worker_error
from ..protocol import optimizer_lr
from .lock import run_lock, temp_path
from .run import Run, RunFileError, atomic_write_json, read_record, record_problem


class NonFiniteLoss(RuntimeError):
    """The mean training loss of an epoch is NaN or infinite (``epoch`` counts from 1)."""

    def __init__(self, message: str, epoch: Optional[int] = None,
                 loss: Optional[float] = None) -> None:
        super().__init__(message)
        self.epoch, self.loss = epoch, loss


#: stages whose diverged runs end with a ``diverged`` record instead of failing: a grid point
#: whose loss turns non-finite is a result of the search (the official tune_*.py scripts skip
#: it and select among the rest), and re-running it would diverge the same way
DIVERGED_IS_RESULT = ("search",)


def end_diverged(run: Run, exc: NonFiniteLoss, log: Callable[[str], None]) -> Optional[dict]:
    """How a run whose loss turned non-finite ends, in the plain and the packed engine alike:
    a search run gets its ``diverged`` record (returned; selection skips it), any other run
    fails (``failed.json``; None is returned).  Call from inside the except block."""
    if run.stage not in DIVERGED_IS_RESULT:
        write_failure(run, exc, log)
        return None
    log(f"diverged: {exc}; selection skips this grid point")
    return diverged_record(run, exc)


def diverged_record(run: Run, exc: NonFiniteLoss) -> dict:
    """The terminal record of a search run whose loss turned non-finite: selection skips it
    (``sweep.select``) and the report lists it."""
    exp = run.experiment
    return {"run_id": run.run_id, "status": "diverged", "smoke": exp.smoke,
            "paper": exp.paper, "experiment": exp.name, "protocol": exp.protocol,
            "stage": run.stage, "seed": run.seed, "lr": exp.optim.lr,
            "wd": exp.optim.weight_decay, "train_split": run.train_split,
            "eval_splits": list(run.eval_splits), "metrics": {},
            "diverged": {"epoch": exc.epoch, "loss": str(exc.loss), "reason": str(exc)},
            "tags": dict(run.tags), "config_hash": exp.config_hash(),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S")}


# ------------------------------------------------------------------ environment facts
def git_commit() -> str:
    if os.environ.get("REPLICATE_COMMIT"):  # jobs run from a code snapshot (replicate.launch)
        return os.environ["REPLICATE_COMMIT"]
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("+dirty" if dirty else "")
    except Exception:
        return os.environ.get("REPLICATE_COMMIT", "unknown")


def environment() -> dict:
    """Where a number comes from: the pinned environment (replicate/environments.py: which
    lock's torch this is), torch with its build, the CUDA version torch was built with, ..."""
    import timm

    from .. import environments
    return {**environments.current(), "python": platform.python_version(),
            "timm": timm.__version__, "numpy": np.__version__, "platform": platform.platform()}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def pick_device(want: str) -> torch.device:
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if want == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device='cuda' but no CUDA device is visible")
    return torch.device(want)


def seed_everything(seed: int, epoch: int) -> None:
    """Derive all RNG streams from (seed, epoch): resuming at an epoch boundary is exact."""
    s = (seed * 1_000_003 + epoch * 7919) % (2 ** 31)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


# ------------------------------------------------------------------ batches
class Batches:
    """Training/eval batches of one split: in-memory tensors on the device, batches cut from the
    decoded-image cache (``split.source``: crops / resizes on the device), or a DataLoader."""

    def __init__(self, split: data.Split, batch_size: int, device: torch.device, train: bool,
                 num_workers: int):
        self.split, self.bs, self.device, self.train = split, batch_size, device, train
        self.num_workers = num_workers
        self.source = None
        self._loader, self._loader_busy = None, False
        if split.in_memory:
            self.images = split.images.to(device)
            self.labels = split.labels.to(device)
        elif split.source is not None:
            self.source = split.source.place(device)  # the whole cache on the device if resident
            self.labels = split.source.labels.to(device)

    def __len__(self) -> int:
        return math.ceil(len(self.split) / self.bs)

    def epoch(self, seed: int, epoch: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed * 1009 + epoch)
        n = len(self.split)
        # one order for every path, drawn first from g: in-memory and DataLoader batches of the
        # same split are identical (tests/test_fastpath.py)
        order = torch.randperm(n, generator=g) if self.train else torch.arange(n)
        if self.split.in_memory:
            order = order.to(self.device)
            for i in range(0, n, self.bs):
                idx = order[i:i + self.bs]
                x = self.images.index_select(0, idx)
                if self.train and self.split.device_augment is not None:
                    x = self.split.device_augment(x, g)
                yield x, self.labels.index_select(0, idx)
            return
        if self.source is not None:  # crops / flips / resizes drawn from g, cut per batch
            for i in range(0, n, self.bs):
                idx = order[i:i + self.bs]
                x = self.source.batch(idx, g if self.train else None, self.device)
                yield x, self.labels.index_select(0, idx.to(self.device))
            return
        # a DataLoader whose workers start once per run; each item is seeded from g (drawn
        # after the order), so its random transforms depend on (seed, epoch) only
        seeds = torch.randint(0, 2 ** 62, (n,), generator=g).tolist() if self.train else [-1] * n
        # epochs iterated side by side (packed runs with several seeds) get a loader each
        shared = not self._loader_busy
        loader = self._persistent_loader() if shared else self._new_loader(persistent=False)
        loader.sampler.items = list(zip(order.tolist(), seeds))
        self._loader_busy = self._loader_busy or shared
        try:
            batches = iter(loader)
            while True:
                try:
                    x, y = next(batches)
                except StopIteration:
                    return
                except Exception as e:  # a worker's error arrives wrapped in its traceback text
                    raise unwrap_worker_error(e) from None
                yield (x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True))
        finally:
            if shared:
                self._loader_busy = False

    def _persistent_loader(self) -> torch.utils.data.DataLoader:
        if self._loader is None:
            self._loader = self._new_loader(persistent=self.num_workers > 0)
        return self._loader

    def _new_loader(self, persistent: bool) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            _SeededItems(self.split.dataset), batch_size=self.bs, sampler=_EpochSampler(),
            num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
            drop_last=False, persistent_workers=persistent,
            # the loader's own seed draw must not consume the global RNG (dropout)
            generator=torch.Generator().manual_seed(0),
            worker_init_fn=_worker_init if self.num_workers else None)


class _EpochSampler(torch.utils.data.Sampler):
    """The (index, item seed) pairs of the current epoch, set by ``Batches.epoch``."""

    def __init__(self) -> None:
        self.items: list = []

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class _SeededItems(torch.utils.data.Dataset):
    """``dataset[i]`` with torch's RNG seeded per item (seed -1: unseeded): random transforms
    drawing from torch's global RNG (torchvision's) give the same item whichever worker, or the
    main process, loads it.  In the main process the RNG state is restored afterwards."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        i, s = item
        if s < 0:
            return self.dataset[i]
        if torch.utils.data.get_worker_info() is not None:
            torch.manual_seed(s)
            return self.dataset[i]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            return self.dataset[i]


def _kill_loader_workers_at_exit() -> None:
    """Loader workers ignore SIGTERM (:func:`_worker_init`), so multiprocessing's own exit hook,
    which terminates daemonic children with SIGTERM and then joins them, would wait forever
    for a worker whose iterator outlived the loader (e.g. kept by a traceback).  Registered
    after that hook, this runs first and kills them with SIGKILL, which they cannot ignore."""
    import multiprocessing

    workers = [p for p in multiprocessing.active_children() if p.daemon]
    if not workers:
        return
    # torch's SIGCHLD handler would raise on the first worker killed here, before the others
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for p in workers:
        p.kill()
    for p in workers:
        try:
            p.join(5)
        except Exception:  # exiting anyway: a worker that cannot be joined is already killed
            pass


atexit.register(_kill_loader_workers_at_exit)


def _worker_init(worker_id: int) -> None:
    # the main process decides when to stop (SIGINT/SIGTERM: checkpoint at the epoch's end); a
    # Ctrl-C or scancel that reaches the loader workers too must not kill them mid-epoch
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    s = torch.initial_seed() % (2 ** 31)
    random.seed(s)
    np.random.seed(s)


def normalizer(entry, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    mean = torch.tensor(entry.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(entry.std, device=device).view(1, 3, 1, 1) * 255
    return lambda x: (x.float() - mean) / std


# ------------------------------------------------------------------ optimisation
def build_optimizer(model: methods.PromptedModel, run: Run) -> torch.optim.Optimizer:
    o = run.experiment.optim
    lr = optimizer_lr(o.lr, o.batch_size, o.lr_scaling)
    decay, no_decay = [], []
    head_bias = model.method.head.bias if hasattr(model.method.head, "bias") else None
    for p in model.trainable_parameters():
        if head_bias is not None and p is head_bias and not o.wd_on_head_bias:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": o.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if o.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=o.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def build_scheduler(opt: torch.optim.Optimizer, run: Run):
    """timm's CosineLRScheduler stepped per epoch == VPT's WarmupCosineSchedule."""
    from timm.scheduler import CosineLRScheduler

    o = run.experiment.optim
    return CosineLRScheduler(opt, t_initial=max(1, o.epochs - o.warmup_epochs), lr_min=0.0,
                             warmup_t=o.warmup_epochs, warmup_lr_init=0.0, warmup_prefix=True,
                             cycle_limit=1, t_in_epochs=True)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, norm, amp_dtype) -> Dict[str, float]:
    model.train(False)
    correct = torch.zeros((), dtype=torch.long, device=batches.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=batches.device)
    n = 0
    for x, y in batches.epoch(0, 0):
        with torch.autocast(batches.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(norm(x))
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(dim=1) == y).sum()
        n += y.numel()
    return {"top1": 100.0 * correct.item() / max(n, 1), "loss": loss_sum.item() / max(n, 1),
            "n": n}


# ------------------------------------------------------------------ the run
class RunLog:
    def __init__(self, run_dir: Path, echo: Callable[[str], None]):
        self.path, self.echo = run_dir / "log.txt", echo

    def __call__(self, msg: str, echo: bool = True) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        with open(self.path, "a") as f:
            f.write(line + "\n")
        if echo:
            self.echo(line)


#: RNG seed of the backbone build: the frozen backbone never depends on the run's seed (random
#: init of tiny backbones included), so a packed group (engine/packed.py) can share one
BACKBONE_SEED = 0


def build_model(run: Run, device: torch.device, adapter=None
                ) -> Tuple[methods.PromptedModel, object]:
    """The run's model; ``adapter``: an already built backbone to share (packed sweeps)."""
    exp = run.experiment
    entry = backbones.get(exp.backbone.name)
    if adapter is None:
        seed_everything(BACKBONE_SEED, -2)
        adapter = backbones.create(exp.backbone.name, exp.backbone.checkpoint,
                                   attention=exp.train.attention)
    seed_everything(run.seed, -1)  # prompts/head init depend on the run's seed only
    model = methods.build_model(adapter, exp.method.type, exp.method.options,
                                data.num_classes(exp.data), entry.default_pool)
    return model.to(device), entry


def resolve_precision(train_spec, device: torch.device,
                      protocol_id: Optional[str] = None) -> Tuple[str, Optional[torch.dtype]]:
    """(precision as recorded, autocast dtype or None) of ``train.precision`` on ``device``;
    also sets the process's TF32 switches for CUDA matmuls and convolutions.

    ``protocol`` takes the protocol's precision (fp32 for every reproduction).  fp32 allows TF32
    on CUDA as the official code did (torch 1.7-1.11 enabled it by default on Ampere); it is
    recorded as ``fp32+tf32`` there and as ``fp32`` on the CPU, where TF32 does not exist.
    """
    p = train_spec.precision
    if p == "protocol":
        from ..protocol import protocol_for
        p = protocol_for(protocol_id).precision
    if p == "auto":
        p = "bf16" if device.type == "cuda" else "fp32"
    tf32 = p == "fp32"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        if p == "fp32":
            p = "fp32+tf32"
    if p == "fp32-strict":
        p = "fp32"  # recorded as plain float32 (the CPU has no TF32 at all)
    return p, (torch.bfloat16 if p == "bf16" else None)


def prepare_compile() -> None:
    """Settings every torch.compile of this engine uses (``compile_model``, packed sweeps):
    dropout drawn from the eager RNG stream (``fallback_random``), so compiled and eager runs
    draw the same prompt-dropout masks."""
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True


@contextlib.contextmanager
def compile_sdpa_guard(device: torch.device) -> Iterator[None]:
    """Around a compiled call: on CPU before torch 2.5 the fused (flash) SDPA kernel is off
    while inductor traces, so the math kernel is compiled instead -- the flash kernel's output
    strides differ from its meta function's, which inductor asserts (pytorch/pytorch#133671,
    fixed by PR #134656).  Eager code outside the call keeps the fused kernel."""
    old_torch = tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 5)
    if device.type != "cpu" or not old_torch:
        yield
        return
    prev = torch.backends.cuda.flash_sdp_enabled()
    torch.backends.cuda.enable_flash_sdp(False)  # also read by the CPU kernel choice
    try:
        yield
    finally:
        torch.backends.cuda.enable_flash_sdp(prev)


class _GuardedCompiled(nn.Module):
    """A compiled module called under :func:`compile_sdpa_guard` (``train()`` reaches the
    original through the compiled wrapper, a child module)."""

    def __init__(self, compiled: nn.Module, device: torch.device):
        super().__init__()
        self.compiled, self.device = compiled, device

    def forward(self, *args, **kwargs):
        with compile_sdpa_guard(self.device):
            return self.compiled(*args, **kwargs)


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile`` for ``train.compile``, with static shapes: the block index is a python
    int, and dynamic shapes turn it into a symbol timm's ModuleList cannot index (torch 2.1)."""
    prepare_compile()
    params = next(iter(model.parameters()), None)
    device = params.device if params is not None else torch.device("cpu")
    compiled = torch.compile(model, dynamic=False)
    return _GuardedCompiled(compiled, device) if device.type == "cpu" else compiled


def train_step(fwd: Callable, model: methods.PromptedModel, opt: torch.optim.Optimizer, norm,
               x: torch.Tensor, y: torch.Tensor, amp_dtype: Optional[torch.dtype]) -> torch.Tensor:
    """One optimizer step; returns the detached loss (no host sync: nothing is read back)."""
    with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = fwd(norm(x))
    loss = F.cross_entropy(logits.float(), y)
    extra = model.method.extra_loss(y)  # e.g. VPTM's instance-instance term
    if extra is not None:
        loss = loss + extra
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def write_failure(run: Run, exc: BaseException, log: Callable[[str], None]) -> None:
    """``failed.json`` with the traceback of ``exc`` (call from inside the except block).  The
    error is one line: a DataLoader worker's error is unwrapped to the original message."""
    from ..errors import describe
    error = f"{type(exc).__name__}: {describe(exc)}"
    atomic_write_json(run.run_dir / "failed.json", {
        "run_id": run.run_id, "status": "failed", "error": error,
        "traceback": traceback.format_exc(), "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    if isinstance(log, RunLog):  # the caller reports the error itself: say it once
        log(f"FAILED: {error}", echo=False)
    else:
        log(f"FAILED: {error}")


class CheckpointPolicy:
    """When an epoch ends with a ``last.ckpt`` write: every ``train.checkpoint_every_epochs``
    epochs, when ``train.checkpoint_every_s`` seconds passed since the last write, after the
    last epoch, and always when the run stops there (preemption).  Any checkpoint resumes
    exactly (per-epoch seeding), so sparser writes only bound the epochs redone after a hard
    kill; each write costs a host sync and a file write."""

    def __init__(self, train_spec, clock: Callable[[], float] = time.monotonic):
        self.every = max(1, int(getattr(train_spec, "checkpoint_every_epochs", 1) or 1))
        self.every_s = float(getattr(train_spec, "checkpoint_every_s", 0.0) or 0.0)
        self.clock = clock
        self.last_write = clock()

    def due(self, epoch: int, last: bool, stopping: bool) -> bool:
        """Write after ``epoch`` (0-based)?"""
        if last or stopping or (epoch + 1) % self.every == 0:
            return True
        return self.every_s > 0 and self.clock() - self.last_write >= self.every_s

    def written(self) -> None:
        self.last_write = self.clock()


class EpochBook:
    """The per-epoch bookkeeping of one training loop, shared by the plain (:func:`_train`) and
    packed (``engine.packed._train_packed``) engines so their histories, logs, evaluation
    schedule, checkpoint policy and stop handling cannot drift apart.

    A line's ``suffix`` says how it was trained (`` (x3 packed)`` in a pack); a smoke run's
    lines end in `` [smoke]``."""

    def __init__(self, run: Run):
        exp = run.experiment
        self.train = exp.train
        self.epochs = exp.optim.epochs
        self.smoke = exp.smoke
        self.first_eval = run.eval_splits[0] if run.eval_splits else None
        self.policy = CheckpointPolicy(exp.train)

    def last(self, epoch: int) -> bool:
        return epoch == self.epochs - 1

    def eval_due(self, epoch: int) -> bool:
        """Evaluate the first eval split after ``epoch``?  The last epoch's evaluation is the
        final one (not done twice)."""
        t = self.train
        return bool(self.first_eval) and not self.last(epoch) and t.eval_every > 0 \
            and (epoch + 1) % t.eval_every == 0

    def non_finite(self, epoch: int, mean_loss: float, lr: float) -> "NonFiniteLoss":
        return NonFiniteLoss(f"non-finite training loss ({mean_loss}) in epoch {epoch + 1}/"
                             f"{self.epochs} (counted from 1 as in the log): lower "
                             f"the lr (now {lr}) or check the data",
                             epoch=epoch + 1, loss=mean_loss)

    def entry(self, epoch: int, mean_loss: float, lr: float, seen: int, dt: float,
              ev: Optional[Dict[str, float]]) -> dict:
        """The history entry of ``epoch`` (``ev``: its evaluation, or None)."""
        h = {"epoch": epoch, "train_loss": mean_loss, "lr": lr,
             "images_per_s": seen / max(dt, 1e-9)}
        if ev is not None:
            h[f"{self.first_eval}_top1"] = ev["top1"]
        return h

    def line(self, h: dict, suffix: str = "") -> str:
        """The log line of history entry ``h``."""
        key = f"{self.first_eval}_top1"
        acc = f" {key} {h[key]:.2f}" if key in h else ""
        return (f"epoch {h['epoch'] + 1}/{self.epochs} loss {h['train_loss']:.4f} "
                f"lr {h['lr']:.4g}{acc} {h['images_per_s']:.0f} img/s{suffix}"
                f"{' [smoke]' if self.smoke else ''}")

    def poll(self, epoch: int, should_stop: Callable[[], object]) -> Tuple[object, bool]:
        """``(why, write)``: the stop reason after ``epoch`` (a string such as ``"SIGTERM"``,
        True, or False; never polled after the last epoch) and whether ``last.ckpt`` is due."""
        last = self.last(epoch)
        why = should_stop() if not last else False
        return why, self.policy.due(epoch, last, bool(why))

    def written(self) -> None:
        self.policy.written()

    @staticmethod
    def stop_line(epoch: int, why: object, where: str = "from here") -> str:
        return (f"stopping after epoch {epoch + 1} ({why if isinstance(why, str) else 'preempted'}"
                f"); checkpoint saved, resume continues {where}")

    def final(self, evals: Dict[str, Dict[str, float]], history: list) -> dict:
        """Final metrics from each eval split's evaluation; the last history entry gets the
        first split's final top-1."""
        metrics = {}
        for s, ev in evals.items():
            metrics[f"{s}_top1"] = ev["top1"]
            metrics[f"{s}_loss"] = ev["loss"]
            metrics[f"{s}_n"] = ev["n"]
        if history and self.first_eval:
            history[-1][f"{self.first_eval}_top1"] = metrics[f"{self.first_eval}_top1"]
        return metrics

    def final_line(self, metrics: dict, suffix: str = "") -> str:
        return ("final " + " ".join(f"{k} {v:.2f}" for k, v in metrics.items()
                                    if k.endswith("top1"))
                + suffix + (" [smoke]" if self.smoke else ""))


def save_checkpoint(path: Path, model: methods.PromptedModel, opt: torch.optim.Optimizer,
                    epoch: int, history: list, run_id: str, wall_time_s: float = 0.0) -> None:
    """``wall_time_s``: training time of every attempt so far (a resumed run's record keeps
    the total, not only its last attempt's)."""
    tmp = temp_path(path)  # this writer's own temporary file (engine/lock.py)
    try:
        torch.save({"model": model.trainable_state_dict(), "optimizer": opt.state_dict(),
                    "epoch": epoch, "history": history, "run_id": run_id,
                    "wall_time_s": wall_time_s}, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, model: methods.PromptedModel, opt: torch.optim.Optimizer,
                    device: torch.device, info: Optional[dict] = None) -> Tuple[int, list]:
    """Restore ``path`` into model and optimizer; returns (next epoch, history).  ``info``
    receives the checkpoint's other fields (``wall_time_s``).  A truncated or corrupted file is
    a :class:`RunFileError` that names it and says how to restart the run."""
    try:
        ck = torch.load(path, map_location=device, weights_only=True)  # tensors and plain data
        if not isinstance(ck, dict) or not {"model", "optimizer", "epoch", "history"} <= set(ck):
            raise ValueError("not a checkpoint of this harness (keys model, optimizer, epoch, "
                             "history)")
    except (OSError, RuntimeError, ValueError, EOFError, KeyError, AttributeError,
            __import__("pickle").UnpicklingError) as e:
        raise RunFileError(
            f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); it was truncated or "
            f"corrupted (disk full, copy interrupted?): delete it (rm '{path}') and re-run to "
            f"restart this run from epoch 1") from None
    if info is not None:
        info["wall_time_s"] = float(ck.get("wall_time_s") or 0.0)
    absent = set(model.trainable_state_dict()) - set(ck["model"])
    missing = model.load_state_dict(ck["model"], strict=False)
    if missing.unexpected_keys or absent:  # every trained tensor must come back
        raise RuntimeError(f"{path} does not fit this run's model (missing "
                           f"{sorted(absent)[:4]}, unexpected {missing.unexpected_keys[:4]})")
    opt.load_state_dict(ck["optimizer"])
    return ck["epoch"] + 1, ck["history"]


def execute(run: Run, echo: Callable[[str], None] = print,
            should_stop: Callable[[], bool] = lambda: False) -> Optional[dict]:
    """Train/evaluate ``run``; return its record.  Idempotent: a finished run returns its
    record, an interrupted one resumes from ``last.ckpt``.  ``should_stop`` is polled after
    every epoch (preemption, SIGTERM); when it returns a true value (a reason such as
    ``"SIGTERM"``, or True) the checkpoint is saved and None returned.  The run directory is
    locked while training (engine/lock.py): a second process on the same run waits, then
    returns the record the first one wrote or resumes from its checkpoint.
    """
    run_dir = run.run_dir
    done = read_record(run_dir)
    if done is not None:
        return done
    with run_lock(run_dir, echo=echo):  # one trainer per run; a second one waits here
        return _execute_locked(run, echo, should_stop)


def execute_all(runs: Sequence[Run], echo: Callable[[str], None] = print,
                should_stop: Callable[[], object] = lambda: False,
                announce: Optional[Callable[[int, Run], None]] = None,
                keep_going: bool = True,
                on_failure: Optional[Callable[[Run, Exception], None]] = None,
                execute_one: Optional[Callable[..., Optional[dict]]] = None,
                ) -> Tuple[List[Optional[dict]], List[Tuple[Run, Exception]]]:
    """Train ``runs`` one after the other with :func:`execute`: the one run loop of the CLI
    (``run``/``reproduce`` in process), the demo and a launched job's runs.

    ``should_stop`` is polled before each run and by the engine after every epoch; a run
    stopped at an epoch boundary ends the loop.  ``announce(i, run)`` (1-based) is called
    before each run.  A run that raises: with ``keep_going`` the error is in its failed.json,
    ``on_failure(run, error)`` is called and the next run trains; otherwise it propagates.
    Returns ``(records, failures)``: one record per run (None when failed, stopped or not
    reached) and the ``(run, error)`` of each failed run.  ``execute_one`` replaces
    :func:`execute` (called as ``execute_one(run, echo=..., should_stop=...)``)."""
    execute_one = execute_one or execute
    records: List[Optional[dict]] = []
    failures: List[Tuple[Run, Exception]] = []
    for i, r in enumerate(runs, 1):
        if should_stop():
            break
        if announce is not None:
            announce(i, r)
        try:
            rec = execute_one(r, echo=echo, should_stop=should_stop)
        except Exception as e:
            if not keep_going:
                raise
            failures.append((r, e))
            records.append(None)
            if on_failure is not None:
                on_failure(r, e)
            continue
        records.append(rec)
        if rec is None:  # stopped at an epoch boundary (preemption, SIGTERM)
            break
    records += [None] * (len(runs) - len(records))  # not reached: stopped before
    return records, failures


def _execute_locked(run: Run, echo: Callable[[str], None], should_stop) -> Optional[dict]:
    run_dir = run.run_dir
    done = read_record(run_dir)  # finished by the process this one waited for
    if done is not None:
        echo(f"[lock] {run.run_id}: finished by the other process; using its record")
        return done
    damaged = record_problem(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "config.json", run.to_dict())
    log = RunLog(run_dir, echo)
    if damaged:
        log(f"re-running: {damaged}")
    try:
        record = _train(run, run_dir, log, should_stop)
    except NonFiniteLoss as e:
        record = end_diverged(run, e, log)
        if record is None:
            raise
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):  # stopped, not failed: resumable
            raise
        write_failure(run, e, log)
        raise
    if record is not None:
        atomic_write_json(run_dir / "record.json", record)
        (run_dir / "failed.json").unlink(missing_ok=True)
    return record


def _train(run: Run, run_dir: Path, log: RunLog, should_stop) -> Optional[dict]:
    exp = run.experiment
    o, t = exp.optim, exp.train
    device = pick_device(t.device)
    precision, amp_dtype = resolve_precision(t, device, exp.protocol)
    model, entry = build_model(run, device)
    norm = normalizer(entry, device)
    train_split = data.load(exp.data, run.train_split, train=True)
    eval_splits = {s: data.load(exp.data, s, train=False) for s in run.eval_splits}
    n_workers = exp.data.num_workers
    train_b = Batches(train_split, o.batch_size, device, True, n_workers)
    eval_b = {s: Batches(sp, t.eval_batch_size or 2 * o.batch_size, device, False, n_workers)
              for s, sp in eval_splits.items()}
    opt = build_optimizer(model, run)
    sched = build_scheduler(opt, run)
    fwd = compile_model(model) if t.compile else model
    if t.cache_features:  # linear probe on a deterministic split: head-only training
        from .features import maybe_cache
        cached = maybe_cache(model, train_b, eval_b, norm, amp_dtype, log)
        if cached is not None:
            fwd, norm, train_b, eval_b = cached

    start_epoch, history = 0, []
    ckpt_path = run_dir / "last.ckpt"
    earlier_wall = 0.0  # training time of earlier attempts (from the checkpoint)
    if ckpt_path.is_file():
        ck_info: dict = {}
        start_epoch, history = load_checkpoint(ckpt_path, model, opt, device, ck_info)
        earlier_wall = ck_info["wall_time_s"]
        log(f"resumed from {ckpt_path} at epoch {start_epoch}/{o.epochs}")
    n_train = model.num_trainable()
    log(f"run {run.run_id}: {exp.method.type} on {exp.backbone.name}, {exp.data.benchmark}/"
        f"{exp.data.task} train={run.train_split}({len(train_split)}) seed={run.seed} "
        f"lr={o.lr} wd={o.weight_decay} bs={o.batch_size} epochs={o.epochs} device={device} "
        f"{precision} trainable={n_train:,}{' SMOKE' if exp.smoke else ''}")
    book = EpochBook(run)
    t_start = time.time()
    for epoch in range(start_epoch, o.epochs):
        sched.step(epoch)  # lr for this epoch (VPT steps after each epoch: same sequence)
        seed_everything(run.seed, epoch)
        model.train(True)
        t0 = time.time()
        loss_sum = torch.zeros((), device=device)
        seen = 0
        for step, (x, y) in enumerate(train_b.epoch(run.seed, epoch)):
            if t.max_steps_per_epoch is not None and step >= t.max_steps_per_epoch:
                break
            loss_sum += train_step(fwd, model, opt, norm, x, y, amp_dtype) * y.numel()
            seen += y.numel()
        mean_loss = (loss_sum / max(seen, 1)).item()  # one host sync per epoch
        if not math.isfinite(mean_loss):
            raise book.non_finite(epoch, mean_loss, o.lr)
        dt = time.time() - t0
        ev = (evaluate(fwd, eval_b[book.first_eval], norm, amp_dtype)
              if book.eval_due(epoch) else None)
        history.append(book.entry(epoch, mean_loss, opt.param_groups[0]["lr"], seen, dt, ev))
        log(book.line(history[-1]))
        why, write = book.poll(epoch, should_stop)
        if write:
            save_checkpoint(ckpt_path, model, opt, epoch, history, run.run_id,
                            earlier_wall + time.time() - t_start)
            book.written()
        if why:
            log(book.stop_line(epoch, why))
            return None
    metrics = book.final({s: evaluate(fwd, b, norm, amp_dtype) for s, b in eval_b.items()},
                         history)
    wall = earlier_wall + time.time() - t_start  # every attempt's time, not only this one's
    log(book.final_line(metrics))
    return make_record(run, model, entry, metrics, history, device, precision, wall)


def make_record(run: Run, model, entry, metrics: dict, history: list, device, precision: str,
                wall: float) -> dict:
    exp = run.experiment
    from ..benchmarks import group_of
    total = sum(p.numel() for p in model.parameters())
    backbone_params = sum(p.numel() for p in model.adapter.parameters())
    ips = [h["images_per_s"] for h in history]
    return {
        "run_id": run.run_id, "status": "done", "smoke": exp.smoke, "paper": exp.paper,
        "experiment": exp.name, "protocol": exp.protocol, "stage": run.stage, "seed": run.seed,
        "backbone": entry.paper_key, "backbone_name": exp.backbone.name,
        "method": run.tags.get("method_label") or exp.cell.get("method") or exp.method.type,
        "method_type": exp.method.type,
        "benchmark": exp.data.benchmark, "task": exp.data.task,
        "group": group_of(exp.data.benchmark, exp.data.task),
        "lr": exp.optim.lr, "wd": exp.optim.weight_decay, "batch_size": exp.optim.batch_size,
        "epochs": exp.optim.epochs, "train_split": run.train_split,
        "eval_splits": list(run.eval_splits), "selected_epoch": exp.optim.epochs - 1,
        "metrics": metrics, "history": history,
        "trainable_params": model.num_trainable(), "total_params": total,
        "backbone_params": backbone_params,
        "commit": git_commit(), "env": environment(), "device": device_name(device),
        "precision": precision, "wall_time_s": wall,
        "images_per_s": float(np.median(ips)) if ips else 0.0,
        "config_hash": exp.config_hash(), "config": exp.to_dict(), "tags": dict(run.tags),
        "cell": dict(exp.cell), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


_COUNT_CACHE: Dict[str, int] = {}


def trainable_count(exp) -> int:
    """Trainable parameters of ``exp``'s model, built on the meta device (no weights, fast)."""
    key = repr((exp.backbone.name, exp.method.type, sorted(exp.method.options.items()),
                exp.data.benchmark, exp.data.task))
    if key not in _COUNT_CACHE:
        entry = backbones.get(exp.backbone.name)
        with torch.device("meta"):
            adapter = entry.adapter(entry.build(), attention=exp.train.attention)
            model = methods.build_model(adapter, exp.method.type, exp.method.options,
                                        data.num_classes(exp.data), entry.default_pool)
        _COUNT_CACHE[key] = model.num_trainable()
    return _COUNT_CACHE[key]
