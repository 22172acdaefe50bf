"""A process whose loader workers outlive their loader still exits.

Loader workers ignore SIGTERM (a scancel or Ctrl-C reaching them must not kill an epoch in
flight; the main process stops at the epoch's end).  multiprocessing's exit hook terminates
daemonic children with SIGTERM and then joins them, so without ``engine.train``'s own exit
hook (SIGKILL first) such a process would wait forever.
"""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys, torch
    from replicate.engine import train as T
    ds = torch.utils.data.TensorDataset(torch.arange(64.0))
    dl = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True,
                                     worker_init_fn=T._worker_init)
    it = iter(dl)
    next(it)
    KEEP = [it]  # a live iterator at exit, as one kept by a traceback would be
    sys.exit(3)
""")


def test_exit_with_live_sigterm_ignoring_workers_does_not_hang():
    # 120 s: the script itself takes a few seconds; a hang never ends
    p = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, timeout=120,
                       capture_output=True, text=True)
    assert p.returncode == 3, p.stderr
