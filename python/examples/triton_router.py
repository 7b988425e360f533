"""A fused MoE router written in Triton: one program per token row.

softmax over all E experts -> top-k -> renormalise over the k chosen (gemma4: x per_expert_scale
[id]; softmax_topk: no scale) or the full-softmax probabilities of the top k (softmax_topk_raw),
following moecheck's routing contract (reference/EDGE_CASES.md): NaN logits rank as -inf and carry
no mass, +inf logits share the mass equally, rows whose chosen logits are all masked get zero
weights, ties go to the lower expert index. Any strides (the gating may be a transposed or
strided view), fp32/fp16/bf16 logits, E up to 4096, k up to 32; exp and division are the
correctly rounded libdevice/IEEE forms so the weights meet fp32 error bounds
(under the interpreter, tl.exp).

`triton_router(gating, k, scale)` is a fn for moecheck.fuzz(device="cuda"). `bug=1` plants a
stride bug (columns read as if contiguous) and `bug=2` drops the NaN masking: both must be caught
(python/tests/test_triton_gpu.py). With TRITON_INTERPRET=1 the kernel also runs on CPU tensors.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

try:
    from triton.language.extra import libdevice
except ImportError:  # older Triton layouts
    from triton.language.extra.cuda import libdevice

_INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
MAX_K = 32
MAX_E = 4096
_FAMILY = {"gemma4": 0, "softmax_topk": 1, "softmax_topk_raw": 2}


@triton.jit
def _limit_exp(x, m, ACCURATE: tl.constexpr):
    # exp(x - m) with the contract's limits: m = +inf -> [x == +inf]; m = -inf -> 0
    finite_m = tl.where((m == float("inf")) | (m == float("-inf")), 0.0, m)
    if ACCURATE:
        e = libdevice.exp(x - finite_m)  # correctly rounded expf on the device
    else:
        e = tl.exp(x - finite_m)  # the interpreter has no libdevice
    e = tl.where(m == float("inf"), (x == float("inf")).to(tl.float32), e)
    e = tl.where(m == float("-inf"), 0.0, e)
    return e


@triton.jit(do_not_specialize=["E", "stride_t", "stride_e", "k"])
def _route_rows(g_ptr, s_ptr, w_ptr, id_ptr, E, stride_t, stride_e, k,
                BLOCK_E: tl.constexpr, KP: tl.constexpr, FAMILY: tl.constexpr, HAS_SCALE: tl.constexpr,
                BUG: tl.constexpr, ACCURATE: tl.constexpr, BF16_BITS: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_E)
    inb = cols < E
    if BUG == 1:  # planted: ignores the column stride
        ptrs = g_ptr + row * stride_t + cols
    else:
        ptrs = g_ptr + row * stride_t + cols.to(tl.int64) * stride_e
    if BF16_BITS:  # bf16 passed as its 16-bit words: widened exactly, subnormals included
        raw = tl.load(ptrs, mask=inb, other=0).to(tl.int32) & 0xFFFF
        x = (raw << 16).to(tl.float32, bitcast=True)
        x = tl.where(inb, x, float("-inf"))
    else:
        x = tl.load(ptrs, mask=inb, other=float("-inf")).to(tl.float32)
    if BUG != 2:  # planted (BUG == 2): NaN is not masked
        x = tl.where(x != x, float("-inf"), x)
    x = tl.where(inb, x, float("-inf"))

    # Selection compares order-preserving integer images of the floats, so that subnormal
    # logits compare exactly whatever the float unit does with them (flush-to-zero).
    bits = x.to(tl.int32, bitcast=True)
    key = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)

    slots = tl.arange(0, KP)
    sel_val = tl.full([KP], float("-inf"), tl.float32)
    sel_id = tl.zeros([KP], tl.int32)
    taken = tl.zeros([BLOCK_E], tl.int32)
    row_max = tl.max(x, axis=0)
    for j in range(KP):  # KP rounds (a compile-time count), the first k of them choose
        avail = inb & (taken == 0)
        mk = tl.max(tl.where(avail, key, -2147483648), axis=0)
        # lowest available index holding the maximum (all remaining -inf: the lowest available)
        idx = tl.min(tl.where(avail & (key == mk), cols, BLOCK_E), axis=0)
        m = tl.max(tl.where(cols == idx, x, float("-inf")), axis=0)
        active = j < k
        taken = tl.where((cols == idx) & active, 1, taken)
        sel_val = tl.where((slots == j) & active, m, sel_val)
        sel_id = tl.where((slots == j) & active, idx, sel_id)

    used = slots < k
    if FAMILY == 2:  # softmax_topk_raw: full-softmax probabilities of the chosen experts
        z = tl.sum(tl.where(inb, _limit_exp(x, row_max, ACCURATE), 0.0), axis=0)
        e = _limit_exp(sel_val, row_max, ACCURATE)
    else:  # renormalise over the chosen k (slot 0 holds the chosen maximum)
        top = tl.max(tl.where(used, sel_val, float("-inf")), axis=0)
        e = tl.where(used, _limit_exp(sel_val, top, ACCURATE), 0.0)
        z = tl.sum(e, axis=0)
    w = tl.math.div_rn(e, tl.where(z > 0.0, z, 1.0))
    if HAS_SCALE:
        w = w * tl.load(s_ptr + sel_id, mask=used, other=1.0)
    tl.store(w_ptr + row * k + slots, w, mask=used)
    tl.store(id_ptr + row * k + slots, sel_id, mask=used)


def triton_router(gating: torch.Tensor, k: int, scale, *, family: str = "gemma4", bug: int = 0):
    """(weights float32 [T, k], ids int32 [T, k]) on gating's device; gating [T, E] any strides."""
    if gating.dim() != 2:
        raise ValueError(f"gating must be [T, E], got {list(gating.shape)}")
    T, E = gating.shape
    if not 1 <= k <= min(E, MAX_K) or E > MAX_E:
        raise ValueError(f"need 1 <= k <= min(E, {MAX_K}) and E <= {MAX_E} (k={k}, E={E})")
    w = torch.empty((T, k), dtype=torch.float32, device=gating.device)
    ids = torch.empty((T, k), dtype=torch.int32, device=gating.device)
    if T == 0:
        return w, ids
    has_scale = family == "gemma4" and scale is not None
    s = scale.float().contiguous() if has_scale else w  # an unused pointer when there is no scale
    bf16 = gating.dtype == torch.bfloat16
    g = gating.view(torch.int16) if bf16 else gating  # same strides, raw 16-bit words
    _route_rows[(T,)](g, s, w, ids, E, gating.stride(0), gating.stride(1), k,
                      BLOCK_E=max(32, triton.next_power_of_2(E)), KP=MAX_K, FAMILY=_FAMILY[family],
                      HAS_SCALE=has_scale, BUG=bug, ACCURATE=not _INTERPRETED,
                      BF16_BITS=bf16)
    return w, ids


def router_for(family: str, bug: int = 0):
    """triton_router with family (and a planted bug) bound, for moecheck.fuzz."""
    return functools.partial(triton_router, family=family, bug=bug)
