"""Shared pytest setup: the repo on sys.path and the SLURM cluster fixture."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

try:  # the session fixture that starts/stops the one-node SLURM cluster
    from tests.slurm_fixtures import *  # noqa: F401,F403
except ImportError:
    pass


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny CPU models: one thread is faster and does not oversubscribe the 2 cores when the
    SLURM jobs of a test run beside the test process (tests/run.sh also sets OMP_NUM_THREADS)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True, scope="session")
def _image_cache_root(tmp_path_factory):
    """Decoded-image cache entries of test data go to a temporary folder, not ~/.cache
    (replicate/data/cache.py; subprocesses inherit the variable)."""
    import os

    old = os.environ.get("REPLICATE_CACHE_ROOT")
    os.environ["REPLICATE_CACHE_ROOT"] = str(tmp_path_factory.mktemp("image_cache"))
    yield
    if old is None:
        os.environ.pop("REPLICATE_CACHE_ROOT", None)
    else:
        os.environ["REPLICATE_CACHE_ROOT"] = old


@pytest.fixture(scope="session")
def micro_cache(tmp_path_factory):
    """The micro pre-trained backbones (replicate/micro), built once per session into a
    temporary cache (about 1.5 minutes of CPU); $REPLICATE_TEST_MICRO_CACHE reuses a directory
    instead (files are keyed by their recipe hash, so a stale one is never picked up)."""
    import os

    from replicate import micro

    cache = os.environ.get("REPLICATE_TEST_MICRO_CACHE") or str(tmp_path_factory.mktemp("micro"))
    # MAE and MoCo v3 in two processes of one thread each (the same files as one by one)
    micro.ensure(cache, log=lambda s: None, jobs=min(2, os.cpu_count() or 1))
    return cache
