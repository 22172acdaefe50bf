"""ADE20K semantic segmentation through mmsegmentation (GateVPT Table 3).

Importing this package registers ``PromptedViTSeg`` in ``mmseg.registry.MODELS``; configs load
it with ``custom_imports = dict(imports=['replicate.seg'], allow_failed_imports=False)``.
Without mmseg/mmcv installed the package still imports (so the CLI can print a useful error);
:func:`require_mmseg` then raises one error naming the fix.

    replicate.seg.run.seg_train(config_path, work_dir, resume=True) -> record dict
    replicate.seg.run.SegJob()(config_path, work_dir)        # submitit callable
    replicate.seg.cli.add_subcommands(subparsers)            # seg-train / seg-test-ms / seg-plan
"""
from __future__ import annotations

import importlib.util
import warnings
from typing import Optional

_IMPORT_ERROR: Optional[BaseException] = None

INSTALL_HINT = ("ADE20K runs in the segmentation environment (torch 2.1 + mmcv==2.1.0 built "
                "with ops + mmsegmentation==1.2.2): `make install-seg` and use "
                ".venv-seg/bin/python, or `conda env create -f environment-seg.yml` (README, "
                "'Cluster workflow')")


def _register() -> None:
    global _IMPORT_ERROR
    if importlib.util.find_spec("mmseg") is None:
        _IMPORT_ERROR = ModuleNotFoundError("No module named 'mmseg'")
        return
    try:
        from . import backbone  # noqa: F401  (registers PromptedViTSeg)
    except ImportError as e:  # mmseg present but broken (e.g. mmcv without ops: mmcv._ext)
        _IMPORT_ERROR = e
        warnings.warn(f"replicate.seg: mmseg is installed but does not import ({e}); "
                      f"{INSTALL_HINT}")


def require_mmseg() -> None:
    """Raise one clear error when mmseg/mmcv cannot be used."""
    if _IMPORT_ERROR is not None:
        raise RuntimeError(f"{INSTALL_HINT} [cause: {type(_IMPORT_ERROR).__name__}: "
                           f"{_IMPORT_ERROR}]") from _IMPORT_ERROR


_register()
