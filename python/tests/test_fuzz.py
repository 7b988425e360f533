"""moecheck.fuzz / replay / check on routing callables, on the CPU."""

import json
import os
import signal

import pytest
import torch

import moecheck
from moecheck import _core
from moecheck.routers import composite_router, router_for

from conftest import SOURCE_DIR, quiet


@pytest.mark.parametrize("family", ["gemma4", "softmax_topk", "softmax_topk_raw", "sigmoid_top1"])
def test_composite_router_passes(family, corpus):
    r = moecheck.fuzz(router_for(family), family=family, cases=250, max_T=300, corpus=corpus, log=quiet)
    assert r.passed, str(r)
    assert r.cases == 250 and r.skipped == 0 and r.rows > 0
    # nothing failed, nothing written (the corpus folder is created when the outputs are checked,
    # before the first case, and stays empty)
    assert os.path.isdir(corpus) and os.listdir(corpus) == []
    for cls in ("f32", "f16", "bf16", "non-contiguous", "has-nan", "has-inf", "k=E", "T=0"):
        assert any(cls in c for c in r.classes), (cls, r.classes)


def test_inputs_reach_fn_exactly_as_the_layouts(corpus):
    seen = []

    def spy(g, k, scale):
        T, E = g.shape
        seen.append((T, E, g.stride(), g.dtype, g.device.type, scale is not None and scale.dtype == torch.float32))
        return composite_router(g, k, scale)

    r = moecheck.fuzz(spy, family="gemma4", cases=200, max_T=40, max_E=70, corpus=corpus, log=quiet)
    assert r.passed and len(seen) == 200
    kinds = set()
    for T, E, (rs, cs), dtype, dev, scale_ok in seen:
        assert dev == "cpu" and scale_ok
        if (rs, cs) == (E, 1):
            kinds.add("contiguous")
        elif cs == 1 and rs > E:
            kinds.add("padded")
        elif rs == 1 and cs == max(T, 1):
            kinds.add("transposed")
        elif cs >= 2 and rs == E * cs:
            kinds.add("strided")
        else:
            pytest.fail(f"unexpected strides {(rs, cs)} for T={T} E={E}")
    assert kinds == {"contiguous", "padded", "transposed", "strided"}
    assert {d for *_, d, _, _ in seen} == {torch.float32, torch.float16, torch.bfloat16}


def test_gaps_of_padded_storage_are_nan():
    def reads_the_gap(g, k, scale):
        w, ids = composite_router(g, k, scale)
        if g.shape[0] >= 1 and g.stride(1) == 1 and g.stride(0) > g.shape[1]:
            gap = torch.as_strided(g, (1,), (1,), g.storage_offset() + g.shape[1])
            assert torch.isnan(gap).all(), "padding between rows must be NaN"
        return w, ids

    r = moecheck.fuzz(reads_the_gap, family="gemma4", cases=150, layouts=["padded"], max_T=20,
                      max_E=40, corpus="/nonexistent-never-written", log=quiet)
    assert r.passed, str(r)


def test_same_seed_same_campaign(corpus):
    def run(seed):
        r = moecheck.fuzz(composite_router, family="gemma4", cases=120, seed=seed, max_T=50, corpus=corpus, log=quiet)
        return r.rows, r.classes

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_shards_partition_a_campaign(corpus):
    rows = []

    def counting(g, k, scale):
        rows.append(g.shape)
        return composite_router(g, k, scale)

    whole = moecheck.fuzz(counting, family="gemma4", cases=60, seed=3, max_T=30, corpus=corpus, log=quiet)
    all_shapes = sorted(rows)
    rows.clear()
    for i in range(3):
        r = moecheck.fuzz(counting, family="gemma4", cases=20, seed=3, shard=f"{i}/3", max_T=30, corpus=corpus, log=quiet)
        assert json.loads(r.to_json())["shard"] == {"index": i, "count": 3}
    assert sorted(rows) == all_shapes and whole.passed


def test_exceptions_are_findings_shrunk_and_saved(corpus):
    def breaks_on_wide_rows(g, k, scale):
        if g.shape[1] > 3:
            raise ValueError(f"cannot route E={g.shape[1]}")
        return composite_router(g, k, scale)

    r = moecheck.fuzz(breaks_on_wide_rows, family="gemma4", cases=300, corpus=corpus, max_failures=1, log=quiet)
    assert not r.passed and len(r.failures) == 1
    f = r.failures[0]
    assert f.check == "crash" and "fn raised ValueError: cannot route E=4" in f.message
    assert f.shrunk["E"] == 4 and f.shrunk["T"] <= 1 and f.shrunk["k"] == 1
    assert f.shrunk["dtype"] == "f32" and f.shrunk["layout"] == "contiguous"
    assert os.path.isfile(f.path) and f.path.startswith(corpus)
    entry = _core.read_case(f.path)
    assert entry["target"].startswith("python:") and entry["mutant"] == "none" and entry["expect"] == "pass"
    assert entry["check"] == "crash" and "torch=" + torch.__version__ in entry["toolkit"]


@pytest.mark.parametrize("bad, expected", [
    (lambda g, k, s: (composite_router(g, k, s)[0].double(), composite_router(g, k, s)[1]), "weights have dtype torch.float64"),
    (lambda g, k, s: (torch.zeros(g.shape[0], k + 1), torch.zeros(g.shape[0], k + 1, dtype=torch.int64)), "have shape"),
    (lambda g, k, s: (torch.zeros(g.shape[0], k), torch.zeros(g.shape[0], k)), "ids have dtype torch.float32"),
    (lambda g, k, s: composite_router(g, k, s)[0], "fn must return (weights, ids), got Tensor"),
    (lambda g, k, s: (1.0, 2), "weights is a float, not a torch.Tensor"),
    (lambda g, k, s: (composite_router(g, k, s)[0].to("meta"), composite_router(g, k, s)[1]), "are on meta"),
])
def test_bad_outputs_are_findings(bad, expected, corpus):
    r = moecheck.fuzz(bad, family="gemma4", cases=50, corpus=corpus, max_failures=1, log=quiet)
    assert not r.passed
    f = r.failures[0]
    assert f.check == "crash" and f.message.startswith("bad output: ") and expected in f.message, f.message
    assert f.shrunk["T"] <= 1


def test_sys_exit_in_fn_is_a_finding(corpus):
    def exits(g, k, scale):
        raise SystemExit(3)

    r = moecheck.fuzz(exits, family="gemma4", cases=20, corpus=corpus, max_failures=1, log=quiet)
    assert r.failures[0].check == "crash" and "SystemExit: 3" in r.failures[0].message


def test_a_hanging_fn_is_a_finding_with_a_timeout(corpus):
    import time as _time

    def hangs_on_wide_rows(g, k, scale):
        if g.shape[1] >= 8:
            while True:
                _time.sleep(0.01)
        return composite_router(g, k, scale)

    before = signal.getsignal(signal.SIGALRM)
    t0 = _time.perf_counter()
    r = moecheck.fuzz(hangs_on_wide_rows, family="gemma4", cases=200, corpus=corpus, max_failures=1,
                      timeout=0.05, shrink_attempts=60, log=quiet)
    assert _time.perf_counter() - t0 < 30
    f = r.failures[0]
    assert f.check == "timeout" and "did not return within 0.05 s" in f.message, f.message
    assert "interrupted by moecheck.CaseTimeout" in f.message and f.shrunk["E"] == 8 and f.shrunk["T"] <= 1
    assert json.loads(r.to_json())["case_timeout_s"] == 0.05
    assert signal.getsignal(signal.SIGALRM) is before


_SLOW_SCRIPT = r"""
import json, os, signal, sys, time
import moecheck
from moecheck.routers import composite_router

def sleep(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        time.sleep(0.01)

calls = [0]
def slow(g, k, scale):
    calls[0] += 1
    if calls[0] == 3:
        sleep(5)      # runs past the end of the 1 s budget
    return composite_router(g, k, scale)

t0 = time.perf_counter()
r = moecheck.fuzz(slow, family="gemma4", seconds=1, corpus=sys.argv[1], log=lambda s: None)
out = {"budget": [time.perf_counter() - t0, r.cases, len(r.failures), calls[0]]}

def wide_rows_hang(g, k, scale):
    if g.shape[1] >= 8:
        sleep(5)
    return composite_router(g, k, scale)
r = moecheck.fuzz(wide_rows_hang, family="gemma4", cases=30, timeout=0.2, max_failures=1,
                  shrink_attempts=10, corpus=sys.argv[1], log=lambda s: None)
out["timeout"] = [r.failures[0].check if r.failures else None]

calls[0] = 0
def stopped_while_slow(g, k, scale):
    calls[0] += 1
    if calls[0] == 4:
        os.kill(os.getpid(), signal.SIGINT)
        sleep(5)
    return composite_router(g, k, scale)
t0 = time.perf_counter()
r = moecheck.fuzz(stopped_while_slow, family="gemma4", cases=1000, corpus=sys.argv[1], log=lambda s: None)
out["stop"] = [time.perf_counter() - t0, r.cases, r.interrupted, r.passed]
print("ALIVE " + json.dumps(out))
"""


def test_slow_calls_never_end_the_interpreter(tmp_path):
    # A slow fn past the end of the budget, past its timeout or after Ctrl-C is interrupted
    # (CaseTimeout), never ended with the process as an uninterruptible in-process call is.
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _SLOW_SCRIPT, str(tmp_path / "corpus")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "ALIVE " in out.stdout, out.stdout + out.stderr
    res = json.loads(out.stdout.split("ALIVE ", 1)[1])
    elapsed, cases, failures, calls = res["budget"]
    assert elapsed < 4 and cases == 2 and failures == 0 and calls >= 3, res  # the slow case: not counted
    assert res["timeout"] == ["timeout"], res
    elapsed, cases, interrupted, passed = res["stop"]
    assert elapsed < 4 and cases == 3 and interrupted and passed, res


def test_keyboard_interrupt_in_fn_stops_with_results(corpus):
    calls = [0]

    def interrupted(g, k, scale):
        calls[0] += 1
        if calls[0] == 30:
            raise KeyboardInterrupt
        return composite_router(g, k, scale)

    r = moecheck.fuzz(interrupted, family="gemma4", cases=1000, corpus=corpus, log=quiet)
    assert r.interrupted and r.passed
    assert 29 <= r.cases <= 30 and calls[0] == 30
    assert json.loads(r.to_json())["interrupted"] is True


def test_ctrl_c_stops_after_the_current_case(corpus):
    calls = [0]
    texts = []

    def signals_itself(g, k, scale):
        calls[0] += 1
        if calls[0] == 12:
            os.kill(os.getpid(), signal.SIGINT)
        return composite_router(g, k, scale)

    before = signal.getsignal(signal.SIGINT)
    r = moecheck.fuzz(signals_itself, family="gemma4", cases=1000, corpus=corpus, log=texts.append)
    assert r.interrupted and r.passed and r.cases == 12
    assert "stopping after the current case" in "".join(texts)
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_during_shrinking_keeps_the_failure(corpus):
    calls = [0]

    def wrong_then_interrupted(g, k, scale):
        calls[0] += 1
        if calls[0] == 5:  # every case fails: call 1 is the first case, 2.. are shrink candidates
            os.kill(os.getpid(), signal.SIGINT)
        w, ids = composite_router(g, k, scale)
        return w * 2 + 1, ids

    r = moecheck.fuzz(wrong_then_interrupted, family="gemma4", cases=1000, corpus=corpus, log=quiet,
                      values=["normal"], dtypes=["f32"])
    assert r.interrupted and r.cases == 1 and len(r.failures) == 1
    assert os.path.isfile(r.failures[0].path) and r.failures[0].check == "weight"
    assert calls[0] <= 6  # the remaining shrink candidates were skipped


def test_to_json_is_the_campaign_schema(corpus, tmp_path, cli):
    from wrong_routers import skip_renormalise
    r = moecheck.fuzz(skip_renormalise, family="gemma4", cases=100, corpus=corpus, max_failures=2, log=quiet)
    doc = json.loads(r.to_json())
    assert doc["schema"] == "moecheck-campaign/1" and doc["target"] == r.target
    assert doc["tool"]["torch"] == torch.__version__ and doc["failures"] == len(r.failures) >= 1
    # the target's domain: only the family it was given is drawn
    assert doc["generator"]["families"] == ["gemma4"] and doc["generator"]["dtypes"] == ["f32", "f16", "bf16"]
    assert doc["expected_classes"] and doc["case_timeout_s"] == moecheck.DEFAULT_TIMEOUT
    f = doc["failure_list"][0]
    assert set(f["shrunk"]) >= {"T", "E", "k", "dtype", "layout", "family"}
    assert f["corpus_file"] == r.failures[0].path and "moecheck.replay(" in f["replay"]
    page = tmp_path / "page.html"
    out = cli("report", r.write_json(tmp_path / "c.json"), "-o", page)
    assert out.returncode == 0, out.stderr
    html = page.read_text()
    assert r.target in html and "failure" in html


def test_python_case_replays_with_the_cli(corpus, cli):
    from wrong_routers import scale_by_slot
    r = moecheck.fuzz(scale_by_slot, family="gemma4", cases=200, corpus=corpus, max_failures=1, log=quiet)
    path = r.failures[0].path
    for target in ("reference", "kernel:auto", "composite"):
        out = cli("replay", path, "--target", target)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "1 matched" in out.stdout
    out = cli("replay", path)  # its own target is a Python function: a named error, exit 2
    assert out.returncode == 2 and "python:" in out.stdout + out.stderr


def test_replay_against_callables(corpus):
    from wrong_routers import off_by_one_k
    r = moecheck.fuzz(off_by_one_k, family="gemma4", cases=200, corpus=corpus, max_failures=1, log=quiet)
    path = r.failures[0].path
    bad = moecheck.replay(path, off_by_one_k)
    assert not bad.passed and bad.entries[0].outcome == "fail" and "duplicate-id" in bad.entries[0].detail
    assert "FAIL" in str(bad) and "did not match" in str(bad)
    good = moecheck.replay(corpus, composite_router)
    assert good.passed and len(good) == 1 and good.entries[0].outcome == "pass"
    assert moecheck.replay(path, "reference").passed
    g, k, scale = r.failures[0].inputs()
    assert not moecheck.check(off_by_one_k, g, k, scale).passed
    assert moecheck.check(composite_router, g, k, scale).passed


@pytest.mark.parametrize("folder", ["corpora/regressions", "corpora/mutants"])
def test_committed_corpora_are_regression_inputs(folder):
    path = os.path.join(SOURCE_DIR, folder)
    if not os.path.isdir(path):
        pytest.skip(f"{path} is not there")
    for family in ("gemma4", "softmax_topk", "softmax_topk_raw"):
        rep = moecheck.replay(path, router_for(family), family=family)
        ran = [e for e in rep if e.outcome != "skipped"]
        assert rep.passed, str(rep)
        assert ran or family != "gemma4"


def test_replay_reports_malformed_files(tmp_path):
    bad = tmp_path / "bad.case"
    bad.write_text("moecheck-case 1\ntarget reference\nfamily nope\n")
    rep = moecheck.replay(tmp_path, composite_router)
    assert not rep.passed and rep.entries[0].outcome == "error"
    assert "bad.case" in rep.entries[0].detail and "family" in rep.entries[0].detail
    rep = moecheck.replay(tmp_path / "missing", composite_router)
    assert rep.entries[0].outcome == "error" and "no such file" in rep.entries[0].detail


def test_check_one_problem():
    g = torch.tensor([[1.0, 3.0, 3.0, 0.5], [float("nan"), 2.0, float("-inf"), 2.0]])
    s = torch.tensor([1.0, 0.5, 2.0, 4.0])
    assert moecheck.check(composite_router, g, 2, s).passed
    from wrong_routers import nan_duplicates
    v = moecheck.check(nan_duplicates, g, 2, s)
    assert not v.passed and v.check == "selection" and "row 1" in v.message
    w, ids = composite_router(g.to(torch.bfloat16), 2, s)
    assert moecheck.check_outputs(g.to(torch.bfloat16), w, ids, s).passed
    assert not moecheck.check_outputs(g, w * 1.01, ids, s).passed


def test_check_outputs_by_contract_from_numpy():
    import math
    import numpy as np
    g = np.array([[1.0, 3.0, float("nan"), 0.5], [0.0, 2.0, 1.0, -1.0]], dtype=np.float32)
    a, b = math.exp(2.0), math.exp(1.0)
    w = np.array([[0.0, 0.0], [a / (a + b), b / (a + b)]], dtype=np.float32)  # row 0 zeroed: it has a NaN
    ids = np.array([[0, 1], [1, 2]], dtype=np.int64)
    strict = moecheck.check_outputs(g, w, ids, family="softmax_topk")
    assert not strict.passed and "row 0" in strict.message
    assert moecheck.check_outputs(g, w, ids, family="softmax_topk", contract="nan-zeroes-row").passed
    outside = moecheck.check_outputs(g, w, ids, family="softmax_topk", contract="nan=zeroes-row max_elements=4")
    assert outside.passed and outside.kind == "skipped" and "T*E" in outside.message
    ids[1, 1] = 2 ** 40
    v = moecheck.check_outputs(g, w, ids, family="softmax_topk", contract="nan-zeroes-row")
    assert not v.passed and "id 1099511627776 outside [0, 4)" in v.message
    with pytest.raises(ValueError, match="no-such"):
        moecheck.check_outputs(g, w, ids, family="softmax_topk", contract="no-such")


def test_argument_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown routing family 'gemma5'"):
        moecheck.fuzz(composite_router, family="gemma5", cases=1)
    with pytest.raises(ValueError, match="sigmoid_grouped"):
        moecheck.fuzz(composite_router, family="sigmoid_grouped", cases=1)
    with pytest.raises(ValueError, match="shard 3/2"):
        moecheck.fuzz(composite_router, family="gemma4", cases=1, shard="3/2")
    with pytest.raises(ValueError, match="unknown dtype 'f64'"):
        moecheck.fuzz(composite_router, family="gemma4", cases=1, dtypes=["f64"])
    with pytest.raises(ValueError, match="unknown layout"):
        moecheck.fuzz(composite_router, family="gemma4", cases=1, layouts=["diagonal"])
    with pytest.raises(ValueError, match="unknown value family 'weird'"):
        moecheck.fuzz(composite_router, family="gemma4", cases=1, values=["weird"])
    with pytest.raises(ValueError, match="cases must be >= 1"):
        moecheck.fuzz(composite_router, family="gemma4", cases=0)
    with pytest.raises(TypeError, match="callable"):
        moecheck.fuzz(42, family="gemma4", cases=1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            moecheck.fuzz(composite_router, family="gemma4", cases=1, device="cuda")
