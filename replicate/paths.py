"""Path helpers shared by config loading, the registries and the data loaders (torch-free).

``${DATA_ROOT}``-style variables in config paths are expanded here; an unset variable is an
error that names it and how to set it.  Lives below ``config`` so that backbones and data can
use it without importing the config layer.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .errors import ConfigError

_VAR = re.compile(r"\$\{(\w+)\}")


def expand_path(value: str, what: str = "path") -> str:
    """Expand ``${DATA_ROOT}``-style variables; an unset variable is an error naming it."""
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise ConfigError(f"{what} '{value}' uses ${{{name}}} but {name} is not set: "
                              f"export {name}=/path (see README, 'Cluster workflow')")
        return os.environ[name]
    return os.path.expanduser(_VAR.sub(sub, value))


def file_sha256(path: "os.PathLike[str] | str", block: int = 1 << 22) -> str:
    """sha256 of a file's bytes, read in blocks (split files, cached images, checkpoints)."""
    h = hashlib.sha256()
    with open(Path(path), "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()
