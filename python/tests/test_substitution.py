"""moecheck.check_substitution and check_routing_substitution on plain and MoE modules."""

import contextlib
import functools
import io

import pytest
import torch
from torch import nn

import moecheck
from gemma4_moe import GainAfterLinear, Gemma4MoE, routing

X = torch.randn(6, 8, generator=torch.Generator().manual_seed(5))


def run_reproduction(text, module, example_inputs, **extra):
    ns = {"module": module, "example_inputs": example_inputs, **extra}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(text, "<reproduction>", "exec"), ns)
    return ns


def test_closure_captured_parameter_is_caught_in_a_plain_module():
    m = GainAfterLinear(capture=True)
    x = torch.randn(3, 4)
    rep = moecheck.check_substitution(m, (x,), cases=20)
    assert not rep.passed
    assert [r.name for r in rep.failures] == ["gain"]
    props = [f.property for f in rep["gain"].failures]
    assert props == ["functional = in place", "reaches the output"]
    first = rep["gain"].failures[0]
    assert "'gain'" in first.message and "captured" in first.message
    # shrunk towards the simplest value: all zeros differs from the in-place output
    assert torch.equal(first.value, torch.zeros(4))
    ns = run_reproduction(first.reproduction, m, (x,))
    assert not torch.equal(ns["out_functional"], ns["out_in_place"])
    assert torch.equal(m.gain.detach(), torch.ones(4))  # the reproduction restored the module
    assert "FAIL parameter gain" in str(rep) and "reproduce:" in str(rep)


def test_fixed_plain_module_passes():
    rep = moecheck.check_substitution(GainAfterLinear(capture=False), torch.randn(3, 4), cases=20)
    assert rep.passed, str(rep)
    assert {r.name for r in rep.results} == {"gain", "linear.weight", "linear.bias"}
    assert all(r.cases >= 19 and r.reached for r in rep.results)


def test_gemma4_moe_closure_is_caught_and_fix_passes():
    bad = moecheck.check_substitution(Gemma4MoE(capture_scale=True), (X,), cases=30)
    assert [r.name for r in bad.failures] == ["per_expert_scale"], str(bad)
    good = moecheck.check_substitution(Gemma4MoE(capture_scale=False), (X,), cases=30)
    assert good.passed, str(good)


class PartialCapture(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.full((4,), 2.0))
        self._mul = functools.partial(torch.mul, other=self.scale)

    def forward(self, x):
        return self._mul(x)


class CopyCapture(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.full((4,), 2.0))
        self._frozen = self.scale.detach().clone()

    def forward(self, x):
        return x * self._frozen


class StorageCapture(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.full((4,), 2.0))
        self._view = self.scale.detach()  # shares the storage: sees in-place writes only

    def forward(self, x):
        return x * self._view


@pytest.mark.parametrize("cls, props", [
    (PartialCapture, ["functional = in place", "reaches the output"]),
    (CopyCapture, ["reaches the output"]),
    (StorageCapture, ["functional = in place", "reaches the output"]),
])
def test_capture_variants(cls, props):
    rep = moecheck.check_substitution(cls(), torch.randn(2, 4), cases=12)
    assert [f.property for f in rep["scale"].failures] == props, str(rep)


class CountsCalls(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1  # mutates module state during forward
        return x * self.w


class ReplacesParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))

    def forward(self, x):
        out = x * self.w
        self.w = nn.Parameter(self.w.detach().clone())  # a new object in the slot
        return out


@pytest.mark.parametrize("module, expected", [
    (CountsCalls(), "buffer 'calls': values changed"),
    (ReplacesParameter(), "tensor object changed"),
])
def test_restoration_failures_are_reported(module, expected):
    rep = moecheck.check_substitution(module, torch.randn(2, 3), params=["w"], cases=5)
    fails = [f for f in rep["w"].failures if f.property == "restoration"]
    assert fails and expected in fails[0].message, str(rep)


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))
        self.register_buffer("spare", torch.zeros(3))

    def forward(self, x):
        return x * self.w


def test_allow_unused():
    rep = moecheck.check_substitution(Unused(), torch.randn(2, 3), cases=6)
    assert [r.name for r in rep.failures] == ["spare"]
    assert rep["spare"].failures[0].property == "reaches the output"
    assert moecheck.check_substitution(Unused(), torch.randn(2, 3), cases=6, allow_unused=["spare"]).passed


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3, bias=False)
        self.b = nn.Linear(3, 3, bias=False)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(self.a(x))


def test_tied_parameters_count_once():
    rep = moecheck.check_substitution(Tied(), torch.randn(2, 3), cases=6)
    assert rep.passed, str(rep)
    assert [r.names for r in rep.results] == [["a.weight", "b.weight"]]


def test_argument_errors():
    with pytest.raises(ValueError, match="unknown parameter or buffer name"):
        moecheck.check_substitution(Unused(), torch.randn(2, 3), params=["nope"])
    with pytest.raises(ValueError, match="allow_unused"):
        moecheck.check_substitution(Unused(), torch.randn(2, 3), allow_unused=["nope"])
    drop = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
    with pytest.raises(ValueError, match="module.eval"):
        moecheck.check_substitution(drop, torch.randn(4, 3))


def test_routing_substitution_catches_the_closure_and_shrinks():
    m = Gemma4MoE(capture_scale=True)
    rep = moecheck.check_routing_substitution(m, routing, "per_expert_scale", (X,), cases=20)
    assert not rep.passed
    f = rep["per_expert_scale"].failures[0]
    assert "fp64 reference for the new scale" in f.message and "[weight]" in f.message
    assert "1 input row(s)" in f.message
    ns = run_reproduction(f.reproduction, m, (X,), router=routing)
    assert ns["x"][0].shape[0] == 1
    verdict = moecheck.check_outputs(ns["logits"], ns["w"], ns["ids"], ns["v"])
    assert not verdict.passed


def test_routing_substitution_passes_the_fix():
    rep = moecheck.check_routing_substitution(Gemma4MoE(capture_scale=False), routing, "per_expert_scale", (X,),
                                              cases=40)
    assert rep.passed, str(rep)


def test_substitution_values_come_from_the_core():
    a = moecheck.substitution_values((5, 7), torch.bfloat16, seed=3, kind="adversarial")
    assert torch.equal(a, moecheck.substitution_values((5, 7), torch.bfloat16, seed=3, kind="adversarial"))
    for kind in ("dyadic", "normal", "adversarial"):
        for dt in (torch.float32, torch.float16, torch.bfloat16):
            v = moecheck.substitution_values((64,), torch.float32, seed=11, kind=kind)
            if kind == "dyadic":
                assert torch.equal(v.to(dt).float(), v)  # exact in every dtype
    d = moecheck.substitution_values((256,), torch.float32, seed=1, kind="dyadic")
    assert torch.equal(d * 16, torch.round(d * 16)) and d.abs().max() <= 16
    with pytest.raises(ValueError, match="unknown value kind"):
        moecheck.substitution_values((2,), kind="bogus")
