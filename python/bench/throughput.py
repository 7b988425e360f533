"""moecheck.fuzz throughput on the CPU, on the Hypothesis anchor's case class
(../shared/anchors/hypothesis_routing_anchor.py): gemma4, fp32, T in [0, 64], E in [1, 256],
k in [1, min(E, 32)], normal logits, scale U(0.5, 1.5). Each example = generate + run fn + the
tie-aware oracle (selection and fp64 weights), end to end from Python.

  fuzz      moecheck.fuzz with its generators restricted to the class (the C++ generator's E and
            k distributions lean to small and power-of-two values, so rows/s is printed too)
  check     the anchor's own distribution (E, k, T uniform; torch.randn / torch.rand), each
            example judged by moecheck.check (one C++ evaluate per example)

fn: `minimal` (topk, softmax, gather, renormalise, x scale: the anchor's ops) and `composite`
(moecheck.routers.composite_router: also NaN / inf / all-masked rows per the contract).
Prints one line per (mode, fn) as "<examples> examples in <s> s = <rate> examples/s".
  python python/bench/throughput.py [EXAMPLES]     (MOECHECK_BENCH_THREADS=N: torch.set_num_threads(N))
"""

import os
import random
import sys
import time

import torch

import moecheck
from moecheck.routers import composite_router


def minimal(g, k, s):
    _, ids = torch.topk(g, k=k, dim=-1)
    sel = torch.softmax(g.float(), dim=-1).gather(1, ids)
    r = sel.sum(-1, keepdim=True)
    return sel / torch.where(r > 0, r, torch.ones_like(r)) * s[ids], ids


def fuzz_rate(fn, n):
    t0 = time.perf_counter()
    r = moecheck.fuzz(fn, family="gemma4", cases=n, seed=1, max_T=64, max_E=256, max_k=32, dtypes=["f32"],
                      values=["normal"], scales=["uniform"], layouts=["contiguous"], log=lambda s: None)
    dt = time.perf_counter() - t0
    assert r.passed, str(r)
    return r.cases, dt, r.rows


def check_rate(fn, n):
    rnd = random.Random(1)
    gen = torch.Generator().manual_seed(1)
    t0 = time.perf_counter()
    rows = 0
    for _ in range(n):
        E = rnd.randint(1, 256)
        k = rnd.randint(1, min(E, 32))
        T = rnd.randint(0, 64)
        g = torch.randn(T, E, generator=gen)
        s = torch.rand(E, generator=gen) + 0.5
        v = moecheck.check(fn, g, k, s)
        assert v.passed, str(v)
        rows += T
    return n, time.perf_counter() - t0, rows


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    threads = os.environ.get("MOECHECK_BENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s)", flush=True)
    for mode, f in (("fuzz", fuzz_rate), ("check", check_rate)):
        for name, fn in (("minimal", minimal), ("composite", composite_router)):
            f(fn, 50)  # warm-up
            cases, dt, rows = f(fn, n)
            print(f"moecheck-python {mode:5s} fn={name:9s}: {cases} examples in {dt:.2f} s = {cases / dt:.0f} "
                  f"examples/s ({rows / dt:.0f} rows/s)", flush=True)


if __name__ == "__main__":
    main()
