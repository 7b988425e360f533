"""Routing written with plain torch ops, following moecheck's routing contract
(reference/EDGE_CASES.md): a correct baseline for moecheck.fuzz and a template for routers.

NaN logits rank as -inf and carry no mass; +inf logits share the mass equally; a row whose
selected logits are all masked (-inf or NaN) gets zero weights (never NaN); ties may be broken
either way (the oracle is tie-aware).
"""

from __future__ import annotations

import functools
from typing import Optional

import torch

_INF = float("inf")


def _limit_exp(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """exp(x - m) with the limits of the contract: m = +inf gives the indicator of x == +inf,
    m = -inf (every entry masked) gives 0."""
    e = torch.exp(x - torch.where(torch.isfinite(m), m, torch.zeros_like(m)))
    e = torch.where(m == _INF, (x == _INF).to(e.dtype), e)
    return torch.where(m == -_INF, torch.zeros_like(e), e)


def composite_router(gating: torch.Tensor, k: int, scale: Optional[torch.Tensor] = None, *,
                     family: str = "gemma4"):
    """(weights float32 [T, k], ids int64 [T, k]) for gating [T, E] (any float dtype, any strides).

    gemma4: softmax over all E -> top-k -> renormalise -> x scale[id]; softmax_topk: the same
    without the scale; softmax_topk_raw: full-softmax probabilities of the top k;
    sigmoid_top1: top-1 by logit, weight sigmoid(logit)."""
    key = gating.float()
    key = torch.where(torch.isnan(key), torch.full_like(key, -_INF), key)
    top, ids = torch.topk(key, k, dim=-1)
    if family == "sigmoid_top1":
        w = torch.sigmoid(top)
    elif family == "softmax_topk_raw":
        e = _limit_exp(key, key.amax(dim=-1, keepdim=True))
        z = e.sum(dim=-1, keepdim=True)
        w = (e / torch.where(z > 0, z, torch.ones_like(z))).gather(1, ids)
    elif family in ("gemma4", "softmax_topk"):
        e = _limit_exp(top, top[:, :1])  # top is sorted: column 0 holds the selected maximum
        z = e.sum(dim=-1, keepdim=True)
        w = e / torch.where(z > 0, z, torch.ones_like(z))
    else:
        raise ValueError(f"composite_router: unknown family {family!r}")
    if family == "gemma4" and scale is not None:
        w = w * scale.float()[ids]
    return w, ids


def router_for(family: str):
    """composite_router with `family` bound: a fn(gating, k, scale) for moecheck.fuzz."""
    return functools.partial(composite_router, family=family)
