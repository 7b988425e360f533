"""A Gemma4-style mixture-of-experts layer in plain PyTorch, in a buggy and a fixed form.

Routing: logits = router_proj(x); softmax over all E experts -> top-k -> renormalise over the k
chosen -> x per_expert_scale[id]. Experts: gated MLPs (gelu(gate) * up -> down), batched by
gathering the chosen experts' weights (no Python loop over tokens or experts).

`Gemma4MoE(capture_scale=True)` reproduces the defect moecheck exists for: the routing closure is
built in __init__ and captures the per_expert_scale Parameter object, so
torch.func.functional_call(layer, {"per_expert_scale": s}, (x,)) silently routes with the old
scale. `capture_scale=False` (the fix) reads self.per_expert_scale when it routes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from moecheck.routers import composite_router


class Gemma4MoE(nn.Module):
    def __init__(self, hidden: int = 8, experts: int = 4, k: int = 2, intermediate: int = 6, *,
                 capture_scale: bool = False, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.k = k
        self.router_proj = nn.Linear(hidden, experts, bias=False)
        with torch.no_grad():
            self.router_proj.weight.copy_(torch.randn(experts, hidden, generator=gen) * 0.5)
        self.per_expert_scale = nn.Parameter(torch.ones(experts))
        self.gate_up = nn.Parameter(torch.randn(experts, 2 * intermediate, hidden, generator=gen) * 0.3)
        self.down = nn.Parameter(torch.randn(experts, hidden, intermediate, generator=gen) * 0.3)
        if capture_scale:
            scale = self.per_expert_scale  # the bug: the Parameter object is captured here

            def route(logits):
                return composite_router(logits, self.k, scale)

            self.route = route

    def route(self, logits):  # the fix: look the parameter up at call time
        return composite_router(logits, self.k, self.per_expert_scale)

    def forward(self, x):
        logits = self.router_proj(x)
        w, ids = self.route(logits)
        gu = torch.einsum("th,tkih->tki", x, self.gate_up[ids])
        g, u = gu.chunk(2, dim=-1)
        y = torch.einsum("tki,tkhi->tkh", F.gelu(g) * u, self.down[ids])
        return (w.unsqueeze(-1) * y).sum(dim=1)


def routing(module: Gemma4MoE, x: torch.Tensor):
    """The layer's routing as moecheck.check_routing_substitution wants it: (weights, ids, logits)."""
    logits = module.router_proj(x)
    w, ids = module.route(logits)
    return w, ids, logits


class GainAfterLinear(nn.Module):
    """The same bug in a plain module: y = linear(x) * gain, with `gain` captured by a lambda
    (capture=True) or read through self (capture=False)."""

    def __init__(self, n: int = 4, capture: bool = False):
        super().__init__()
        self.linear = nn.Linear(n, n)
        self.gain = nn.Parameter(torch.ones(n))
        if capture:
            g = self.gain
            self._apply_gain = lambda y: y * g
        else:
            self._apply_gain = lambda y: y * self.gain

    def forward(self, x):
        return self._apply_gain(self.linear(x))
