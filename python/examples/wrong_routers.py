"""Deliberately wrong routers, one per kernel mutant class that applies to a Python router
(`moecheck mutants --list`; the GPU-only classes grid_overflow and shared_race have no Python
analogue). Each is what a plausible torch implementation gets wrong; moecheck.fuzz must catch
each one and shrink it to a case of at most two rows (python/tests/test_wrong_routers.py).

MUTANT_ROUTERS: mutant name -> (family, fn, fuzz keyword arguments that reach the bug class).
"""

from __future__ import annotations

import torch

from moecheck.routers import composite_router

_INF = float("inf")


def _keys(g):
    k = g.float()
    return torch.where(torch.isnan(k), torch.full_like(k, -_INF), k)


def skip_renormalise(g, k, scale):
    """Full-softmax probabilities of the chosen experts, never renormalised over the k."""
    key = _keys(g)
    p = torch.softmax(key, dim=-1)
    p = torch.nan_to_num(p, nan=0.0)
    _, ids = torch.topk(key, k, dim=-1)
    return p.gather(1, ids) * scale[ids], ids


def topk_only_softmax(g, k, scale):
    """softmax_topk_raw computed as a softmax over the k chosen logits (right for the
    renormalising families, wrong for the raw one)."""
    return composite_router(g, k, None, family="softmax_topk")


def scale_by_slot(g, k, scale):
    """Multiplies by scale[slot] instead of scale[expert id]."""
    w, ids = composite_router(g, k, None, family="softmax_topk")
    return w * scale[:k].unsqueeze(0), ids


def off_by_one_k(g, k, scale):
    """Selects k - 1 experts and repeats the last one in the final slot."""
    w, ids = composite_router(g, k, scale)
    if k >= 2:
        ids = torch.cat([ids[:, :-1], ids[:, -2:-1]], dim=1)
    return w, ids


def drop_tied_expert(g, k, scale):
    """Iterative argmax that masks every expert *equal* to the chosen maximum, so tied experts
    vanish and the last slots repeat an already chosen expert."""
    key = _keys(g).clone()
    picks = []
    for _ in range(k):
        j = key.argmax(dim=-1, keepdim=True)
        picks.append(j)
        key = torch.where(key == key.gather(1, j), torch.full_like(key, -_INF), key)
    ids = torch.cat(picks, dim=1) if picks else torch.empty(g.shape[0], 0, dtype=torch.int64)
    w, _ = composite_router(g, k, None, family="softmax_topk")
    return w * scale[ids], ids


def skip_partial_warp(g, k, scale):
    """Only looks at the experts below the last multiple of 32 (when E >= 32)."""
    E = g.shape[1]
    cut = (E // 32) * 32 if E >= 32 else E
    if cut < k:
        cut = E
    w, ids = composite_router(g[:, :cut], k, scale[:cut])
    return w, ids


def fp16_accumulation(g, k, scale):
    """Sums the softmax denominator in fp16."""
    key = _keys(g)
    top, ids = torch.topk(key, k, dim=-1)
    m = top[:, :1]
    e = torch.exp(top - torch.where(torch.isfinite(m), m, torch.zeros_like(m)))
    e = torch.where(m == _INF, (top == _INF).float(), e)
    e = torch.where(m == -_INF, torch.zeros_like(e), e)
    z = e.half().cumsum(dim=-1)[:, -1:].float()
    w = e / torch.where(z > 0, z, torch.ones_like(z))
    return w * scale[ids], ids


def ignore_col_stride(g, k, scale):
    """Reads the gating through its row stride only, as if columns were contiguous."""
    flat = torch.as_strided(g, g.shape, (g.stride(0), 1), g.storage_offset())
    return composite_router(flat, k, scale)


def nan_duplicates(g, k, scale):
    """torch.topk straight on the logits: NaN ranks above +inf instead of as -inf."""
    _, ids = torch.topk(g.float(), k, dim=-1)
    p = torch.softmax(_keys(g), dim=-1).gather(1, ids)
    z = p.sum(dim=-1, keepdim=True)
    w = p / torch.where(z > 0, z, torch.ones_like(z))
    return torch.nan_to_num(w, nan=0.0) * scale[ids], ids


def zero_sum_divide(g, k, scale):
    """No zero-sum guard: rows whose chosen logits are all masked get NaN weights."""
    key = _keys(g)
    top, ids = torch.topk(key, k, dim=-1)
    return torch.softmax(top, dim=-1) * scale[ids], ids


MUTANT_ROUTERS = {
    "skip_renormalise": ("gemma4", skip_renormalise, {}),
    "topk_only_softmax": ("softmax_topk_raw", topk_only_softmax, {}),
    "scale_by_slot": ("gemma4", scale_by_slot, {}),
    "off_by_one_k": ("gemma4", off_by_one_k, {}),
    "drop_tied_expert": ("gemma4", drop_tied_expert, {"values": ["ties", "integer"]}),
    "skip_partial_warp": ("gemma4", skip_partial_warp, {"max_E": 128}),
    "fp16_accumulation": ("gemma4", fp16_accumulation, {"dtypes": ["f32"]}),
    "ignore_col_stride": ("gemma4", ignore_col_stride, {"layouts": ["transposed", "strided"]}),
    "nan_duplicates": ("gemma4", nan_duplicates, {"values": ["nan"]}),
    "zero_sum_divide": ("gemma4", zero_sum_divide, {"values": ["inf", "nan"]}),
}
