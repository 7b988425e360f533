"""Every deliberately wrong router (one per applicable kernel mutant class) is caught and shrunk
to at most two rows; the correct router passes the same campaign."""

import os

import pytest

import moecheck
from moecheck.routers import router_for
from wrong_routers import MUTANT_ROUTERS

from conftest import quiet


def test_every_cpu_mutant_class_has_a_router(cli):
    out = cli("mutants", "--list")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    kernel = {r[1] for r in rows if len(r) >= 2 and r[0] == "kernel" and "GPU" not in " ".join(r[2:])}
    assert kernel and kernel == set(MUTANT_ROUTERS), kernel ^ set(MUTANT_ROUTERS)


@pytest.mark.parametrize("mutant", sorted(MUTANT_ROUTERS))
def test_wrong_router_is_caught_and_shrunk(mutant, corpus):
    family, fn, kw = MUTANT_ROUTERS[mutant]
    r = moecheck.fuzz(fn, family=family, cases=2000, corpus=corpus, max_failures=1, log=quiet, **kw)
    assert not r.passed, f"{mutant} survived {r.cases} cases"
    f = r.failures[0]
    assert f.shrunk["T"] <= 2, str(f)
    assert os.path.isfile(f.path)
    assert f.check in ("weight", "selection", "duplicate-id", "id-range"), str(f)
    # the saved case keeps exposing the bug, and the correct router passes it
    assert not moecheck.replay(f.path, fn).passed
    assert moecheck.replay(f.path, router_for(family)).passed
    ok = moecheck.fuzz(router_for(family), family=family, cases=300, corpus=corpus, log=quiet, **kw)
    assert ok.passed, str(ok)
