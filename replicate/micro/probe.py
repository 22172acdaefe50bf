"""How good is a micro backbone?  k-NN top-1 on digits val of the features a linear probe
reads (the entry's default pool), loaded through the registry and its converter."""
from __future__ import annotations

import torch

from .common import knn_accuracy


@torch.no_grad()
def knn_of_entry(entry_name: str, checkpoint: str) -> float:
    from .. import backbones, methods

    entry = backbones.get(entry_name)
    adapter = backbones.create(entry_name, checkpoint)
    model = methods.build_model(adapter, "linear", {}, 10, entry.default_pool)
    model.train(False)

    def features(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([model.method.features(model.adapter, model.forward_tokens(b))
                          for b in x.split(256)])

    return knn_accuracy(features)
