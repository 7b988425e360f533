"""The Triton router of python/examples under moecheck.fuzz(device="cuda") (GPU machine)."""

import pytest

import moecheck

triton = pytest.importorskip("triton")  # noqa: F841  (the GPU machine has it; CI has no GPU)
from triton_router import router_for  # noqa: E402

from conftest import quiet  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("family", ["gemma4", "softmax_topk", "softmax_topk_raw"])
def test_triton_router_is_clean(family, corpus):
    r = moecheck.fuzz(router_for(family), family=family, device="cuda", cases=3000, max_E=1024,
                      corpus=corpus, log=quiet)
    print(r)
    assert r.passed, str(r)
    assert r.cases == 3000 and r.device == "cuda"
    assert {"f32", "f16", "bf16"} <= {c.split("=")[-1] for c in r.classes}


@pytest.mark.parametrize("bug, values, layouts", [
    (1, None, ["transposed", "strided"]),   # column stride ignored
    (2, ["nan"], None),                     # NaN not masked
])
def test_planted_triton_bug_is_caught_and_shrunk(bug, values, layouts, corpus):
    r = moecheck.fuzz(router_for("gemma4", bug), family="gemma4", device="cuda", cases=2000, max_E=256,
                      values=values, layouts=layouts, corpus=corpus, max_failures=1, log=quiet)
    print(r)
    assert not r.passed, f"planted bug {bug} survived {r.cases} cases"
    f = r.failures[0]
    assert f.shrunk["T"] <= 2, str(f)
    assert not moecheck.replay(f.path, router_for("gemma4", bug), device="cuda").passed
    assert moecheck.replay(f.path, router_for("gemma4"), device="cuda").passed
