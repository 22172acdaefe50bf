"""The micro pre-trained backbones' registry entries now live in :mod:`replicate.backbones.zoo`
(torch-free, so listing backbones needs neither torch nor this package); kept so that old
imports of this module keep working."""
from __future__ import annotations

from ..backbones import zoo as _zoo  # noqa: F401  (the entries are registered there)
