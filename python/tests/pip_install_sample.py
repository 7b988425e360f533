"""A user's test file, run by pip_install_check.sh against `pip install ./python`."""

import os

import torch
from torch import nn

import moecheck as mc
from moecheck.routers import composite_router


def skips_renormalising(gating, k, scale):
    p = torch.softmax(gating.float(), dim=-1)
    top, ids = torch.topk(p, k, dim=-1)
    return top * scale[ids], ids


class Gain(nn.Module):
    def __init__(self, capture):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.gain = nn.Parameter(torch.ones(4))
        if capture:
            g = self.gain
            self.apply_gain = lambda y: y * g
        else:
            self.apply_gain = lambda y: y * self.gain

    def forward(self, x):
        return self.apply_gain(self.lin(x))


def test_the_installed_package_is_used():
    assert mc.__file__.startswith(os.environ["MOECHECK_SITE"]), mc.__file__
    assert mc._core.__file__.startswith(os.environ["MOECHECK_SITE"])


def test_fixture_passes_a_correct_router(moecheck):
    r = moecheck.fuzz(composite_router, family="gemma4")
    assert r.cases == 150  # --moecheck-cases reached the fixture through the entry point


def test_skipped_renormalisation_is_caught_and_shrunk():
    r = mc.fuzz(skips_renormalising, family="gemma4", cases=300, max_failures=1, log=lambda s: None,
                values=["normal"])
    assert not r.passed
    f = r.failures[0]
    assert f.check == "weight" and f.shrunk["T"] <= 2 and os.path.isfile(f.path)


def test_closure_is_caught_and_fix_passes():
    x = torch.randn(3, 4)
    bad = mc.check_substitution(Gain(capture=True), (x,), cases=10)
    assert [r.name for r in bad.failures] == ["gain"]
    assert mc.check_substitution(Gain(capture=False), (x,), cases=10).passed
