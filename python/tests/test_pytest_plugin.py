"""The pytest plugin, run on sample test files with pytester."""

import os

import moecheck

from conftest import EXAMPLES, plugin_args

HEADER = f"""
import sys
sys.path.insert(0, {EXAMPLES!r})
import pytest
from moecheck.routers import composite_router
from wrong_routers import skip_renormalise
"""


def run(pytester, body, *args):
    pytester.makepyfile(test_sample=HEADER + body)
    return pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider", *args)


def test_fixture_fuzz_passes_and_fails_with_the_shrunk_case(pytester, tmp_path):
    corpus = tmp_path / "found"
    res = run(pytester, """
def test_good(moecheck):
    r = moecheck.fuzz(composite_router, family="gemma4", max_T=40)
    print("CASES", r.cases, "SEED", r.seed)

def test_bad(moecheck):
    moecheck.fuzz(skip_renormalise, family="gemma4", max_failures=1)
""", "-s", "--moecheck-cases", "37", "--moecheck-seed", "5", "--moecheck-corpus", str(corpus))
    res.assert_outcomes(passed=1, failed=1)
    out = res.stdout.str()
    assert "CASES 37 SEED 5" in out
    assert "FAIL [weight]" in out and "shrunk:  T=1" in out
    assert "moecheck replay " + str(corpus) in out and "--target reference" in out
    assert "moecheck.replay(" in out and "re-run: pytest" in out and "--moecheck-seed 5" in out
    saved = list(corpus.glob("*.case"))
    assert len(saved) == 1


def test_seconds_option_replaces_the_budget(pytester):
    res = run(pytester, """
def test_budget(moecheck):
    r = moecheck.fuzz(composite_router, family="gemma4", cases=5, max_T=20)
    assert r.cases > 5, r.cases
""", "--moecheck-seconds", "1")
    res.assert_outcomes(passed=1)


def test_corpus_marker_parametrizes_one_test_per_case(pytester, tmp_path):
    corpus = tmp_path / "cases"
    for seed in (1, 2):
        moecheck.fuzz(__import__("wrong_routers").scale_by_slot, family="gemma4", cases=400, seed=seed,
                      corpus=str(corpus), max_failures=1, log=lambda s: None)
    n = len(list(corpus.glob("*.case")))
    assert n >= 1
    res = run(pytester, f"""
from wrong_routers import scale_by_slot

@pytest.mark.moecheck_corpus({str(corpus)!r})
def test_fixed(moecheck, moecheck_case):
    moecheck.replay(moecheck_case, composite_router)

@pytest.mark.moecheck_corpus({str(corpus)!r})
def test_still_broken(moecheck, moecheck_case):
    moecheck.replay(moecheck_case, scale_by_slot)
""", "-v")
    res.assert_outcomes(passed=n, failed=n)
    assert "test_fixed[python_wrong_routers.scale_by_slot-" in res.stdout.str()


def test_corpus_marker_errors_are_usage_errors(pytester):
    res = run(pytester, """
def test_missing_marker(moecheck, moecheck_case):
    pass
""")
    assert res.ret != 0
    assert "moecheck_corpus" in res.stdout.str() + res.stderr.str()


def test_substitution_through_the_fixture(pytester):
    res = run(pytester, """
from gemma4_moe import GainAfterLinear
import torch

def test_buggy(moecheck):
    moecheck.check_substitution(GainAfterLinear(capture=True), torch.randn(2, 4), cases=5)

def test_fixed(moecheck):
    moecheck.check_substitution(GainAfterLinear(capture=False), torch.randn(2, 4), cases=5)
""")
    res.assert_outcomes(passed=1, failed=1)
    assert "[functional = in place]" in res.stdout.str()


def test_options_are_listed(pytester):
    pytester.makepyfile(test_x="def test_x(): pass")
    res = pytester.runpytest(*plugin_args(), "--help")
    out = res.stdout.str()
    for opt in ("--moecheck-seconds", "--moecheck-cases", "--moecheck-seed", "--moecheck-corpus"):
        assert opt in out
