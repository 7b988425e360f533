"""pytest plugin of moecheck (entry point pytest11, or `-p moecheck.pytest_plugin`).

    def test_router(moecheck):
        moecheck.fuzz(my_router, family="gemma4")       # fails the test with the shrunk cases

    @pytest.mark.moecheck_corpus("corpora/found")
    def test_regressions(moecheck, moecheck_case):      # one test per .case file
        moecheck.replay(moecheck_case, my_router)

Options: --moecheck-seconds / --moecheck-cases (replace the budget of every campaign),
--moecheck-seed, --moecheck-corpus (where shrunk failures are saved).
"""

from __future__ import annotations

import os
from typing import Iterable

import pytest

import moecheck as _mc


def pytest_addoption(parser):
    g = parser.getgroup("moecheck", "moecheck routing fuzzing")
    g.addoption("--moecheck-seconds", type=float, default=None, metavar="S",
                help="time budget of every moecheck campaign (replaces the test's budget)")
    g.addoption("--moecheck-cases", type=int, default=None, metavar="N",
                help="case budget of every moecheck campaign (replaces the test's budget)")
    g.addoption("--moecheck-seed", type=int, default=None, metavar="N",
                help="campaign and substitution seed (replaces the test's seed)")
    g.addoption("--moecheck-corpus", default=None, metavar="DIR",
                help="folder where moecheck saves shrunk failures (.case files)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "moecheck_corpus(*folders): run the test once per .case file under the folders "
                   "(relative to the test file), passed as the moecheck_case argument")


def corpus_params(*folders, base: str = "") -> list:
    """pytest.param(path, id=...) for every .case file under `folders` (sorted, recursive), for
    @pytest.mark.parametrize. A missing folder is a ValueError naming it."""
    paths = [f if os.path.isabs(f) or not base else os.path.join(base, f) for f in map(os.fspath, folders)]
    files = _mc._core.list_cases(paths)
    out = []
    for f in files:
        rel = f
        for p in paths:
            if f.startswith(p.rstrip("/") + "/"):
                rel = f[len(p.rstrip("/")) + 1:]
                break
        out.append(pytest.param(f, id=rel))
    return out


def pytest_generate_tests(metafunc):
    if "moecheck_case" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("moecheck_corpus")
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: the moecheck_case argument needs "
                                "@pytest.mark.moecheck_corpus(folder, ...)")
    base = os.path.dirname(str(metafunc.definition.fspath))
    try:
        params = corpus_params(*marker.args, base=base)
    except ValueError as e:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: moecheck_corpus: {e}") from None
    metafunc.parametrize("moecheck_case", params)


class MoecheckFixture:
    """The `moecheck` fixture: moecheck's entry points with the command-line options applied;
    fuzz / replay / check_substitution / check_routing_substitution fail the test with a readable
    report, run() returns the campaign result without failing."""

    def __init__(self, request):
        self._request = request
        self._config = request.config

    def _opt(self, name):
        return self._config.getoption(name)

    def _fuzz_kwargs(self, kw: dict) -> dict:
        kw = dict(kw)
        seconds, cases = self._opt("--moecheck-seconds"), self._opt("--moecheck-cases")
        if seconds is not None or cases is not None:
            kw["seconds"], kw["cases"] = seconds, cases
        if self._opt("--moecheck-seed") is not None:
            kw["seed"] = self._opt("--moecheck-seed")
        if self._opt("--moecheck-corpus") is not None:
            kw["corpus"] = self._opt("--moecheck-corpus")
        kw.setdefault("progress", False)
        return kw

    def run(self, fn, **kw) -> "_mc.FuzzResult":
        """moecheck.fuzz with the options applied; returns the result."""
        result = _mc.fuzz(fn, **self._fuzz_kwargs(kw))
        if result.interrupted:
            print(result)
            raise KeyboardInterrupt
        return result

    def fuzz(self, fn, **kw) -> "_mc.FuzzResult":
        """moecheck.fuzz; fails the test when a failure is found."""
        result = self.run(fn, **kw)
        if not result.passed:
            node = self._request.node.nodeid
            pytest.fail(f"{result}\n  re-run: pytest '{node}' --moecheck-seed {result.seed}", pytrace=False)
        return result

    def replay(self, path_or_folder, fn=None, **kw) -> "_mc.ReplayReport":
        """moecheck.replay; fails the test when an entry does not match."""
        report = _mc.replay(path_or_folder, fn, **kw)
        if not report.passed:
            pytest.fail(str(report), pytrace=False)
        return report

    def check_substitution(self, module, example_inputs, **kw):
        """moecheck.check_substitution; fails the test when a property fails."""
        if self._opt("--moecheck-seed") is not None:
            kw["seed"] = self._opt("--moecheck-seed")
        report = _mc.check_substitution(module, example_inputs, **kw)
        if not report.passed:
            pytest.fail(str(report), pytrace=False)
        return report

    def check_routing_substitution(self, module, router, scale_param="per_expert_scale", example_inputs=None, **kw):
        """moecheck.check_routing_substitution; fails the test when routing ignores the scale."""
        if self._opt("--moecheck-seed") is not None:
            kw["seed"] = self._opt("--moecheck-seed")
        report = _mc.check_routing_substitution(module, router, scale_param, example_inputs, **kw)
        if not report.passed:
            pytest.fail(str(report), pytrace=False)
        return report


@pytest.fixture
def moecheck(request) -> MoecheckFixture:
    """moecheck with this run's --moecheck-* options (see MoecheckFixture)."""
    return MoecheckFixture(request)
