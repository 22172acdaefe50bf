"""Fixed 2-D sin-cos position embeddings (MAE ``util/pos_embed.py``; MoCo v3 ``vits.py``
builds the same table), with a zero row for CLS."""
from __future__ import annotations

import torch


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """(1, 1 + grid*grid, dim): half the channels encode the row, half the column, each as
    sin/cos of position * 1/10000^(2i/d); CLS gets zeros (MAE's ``cls_token=True``)."""
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs dim % 4 == 0, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                            torch.arange(grid, dtype=torch.float64), indexing="ij")

    def enc(pos: torch.Tensor) -> torch.Tensor:
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    # MAE: emb_h from grid[0] (the w index of its meshgrid), emb_w from grid[1]
    emb = torch.cat([enc(xs), enc(ys)], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), emb]).float()[None]
