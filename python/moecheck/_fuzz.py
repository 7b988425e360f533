"""moecheck.fuzz / moecheck.replay / moecheck.check: routing callables under the C++ campaign engine.

Generation, the fp64 reference, the tie-aware oracle, shrinking and corpus writing are the C++
core's (harness/core): the engine runs a Target whose run() calls `_CaseRunner` below, which
builds the torch inputs on the campaign's device, calls fn and hands the outputs back through
DLPack. Everything per case is a handful of tensor operations; nothing loops over elements.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from typing import Callable, Iterable, Optional, Sequence, Union

import torch

from . import _core
from ._tensors import (CALLABLE_FAMILIES, DTYPE_BY_CODE, FAMILIES, as_f32_cpu, case_inputs,
                       gating_view, from_bytes, NAME_BY_DTYPE)

#: Case budget of a campaign given neither `seconds` nor `cases`.
DEFAULT_CASES = 500
#: Per-case timeout of a campaign given no `timeout` (seconds): long enough for the first call of
#: a JIT-compiled fn (Triton, torch.compile); the time budget bounds a call as well.
DEFAULT_TIMEOUT = 60.0

RoutingFn = Callable[[torch.Tensor, int, Optional[torch.Tensor]], tuple]


# ---- the per-case runner ---------------------------------------------------------------------

class _CaseRunner:
    """Called by the C++ PythonTarget once per case and shrink candidate (protocol in
    python/src/python_target.hpp): builds the inputs, calls fn under torch.no_grad(), checks the
    outputs' kind/shape/dtype/device and returns CPU contiguous tensors or a finding. `active` is
    True while fn runs: only then does moecheck's SIGALRM handler (_Alarm) raise CaseTimeout."""

    __slots__ = ("fn", "device", "calls", "active")

    def __init__(self, fn: RoutingFn, device: torch.device):
        self.fn = fn
        self.device = device
        self.calls = 0
        self.active = False

    def __call__(self, storage, dtype, T, E, row_stride, col_stride, k, family, scale):
        self.calls += 1
        dev = self.device
        try:
            g = gating_view(storage, DTYPE_BY_CODE[dtype], T, E, row_stride, col_stride, dev)
            s = None
            if scale is not None:
                s = from_bytes(scale, torch.float32)
                if dev.type != "cpu":
                    s = s.to(dev)
        except Exception as e:  # e.g. the device ran out of memory or is in an error state
            return (1, f"{type(e).__name__} while moving the case to {dev}: {e}")
        try:
            self.active = True
            try:
                with torch.no_grad():
                    out = self.fn(g, k, s)
            finally:
                self.active = False
        except CaseTimeout as e:  # the C++ target asked for it (timeout, stop or end of budget)
            return (3, _exc_text(e))
        except (Exception, SystemExit) as e:  # SystemExit: fn called sys.exit(); still a finding
            return (1, _exc_text(e))
        bad = _bad_output(out, T, k, g.device)
        if bad:
            return (2, bad)
        w, ids = out
        try:
            w = w.detach()
            ids = ids.detach()
            if w.device.type != "cpu":
                w = w.cpu()  # synchronises: an asynchronous device error surfaces here
                ids = ids.cpu()
            return (0, w.contiguous(), ids.contiguous())
        except Exception as e:
            return (1, _exc_text(e))


def _exc_text(e: BaseException) -> str:
    """"TypeName: first line of the message"."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _bad_output(out, T: int, k: int, device: torch.device) -> str:
    """Why `out` is not (float32 weights [T, k], int32/int64 ids [T, k]) on `device`; "" if it is."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        what = type(out).__name__ + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
        return f"fn must return (weights, ids), got {what}"
    w, ids = out
    for name, t in (("weights", w), ("ids", ids)):
        if not isinstance(t, torch.Tensor):
            return f"{name} is a {type(t).__name__}, not a torch.Tensor"
    if w.dtype != torch.float32:
        return f"weights have dtype {w.dtype}, expected torch.float32"
    if ids.dtype not in (torch.int32, torch.int64):
        return f"ids have dtype {ids.dtype}, expected torch.int32 or torch.int64"
    for name, t in (("weights", w), ("ids", ids)):
        if tuple(t.shape) != (T, k):
            return f"{name} have shape {list(t.shape)}, expected [{T}, {k}] (T, k)"
        if t.device != device:
            return f"{name} are on {t.device}, expected {device} (the input's device)"
    return ""


# ---- results ------------------------------------------------------------------------------------

class Failure:
    """One unique failure of a campaign, shrunk and saved.

    check    the failing check ("weight", "selection", "crash", "duplicate-id", ...)
    message  the first violation or error, one line
    shrunk   the minimal case's shape: dict with T, E, k, dtype, family, layout (+ pad,
             value_family, scale_family), like the campaign JSON's "shrunk"
    original the shape of the case first found failing
    path     the saved .case file ("" when the campaign ran without a corpus)
    replay   how to replay it (Python and the moecheck CLI)
    case     the shrunk case with its values (see inputs())
    """

    def __init__(self, j: dict, case: dict, target: str):
        self.check: str = j["check"]
        self.message: str = j["message"]
        self.signature: str = j["signature"]
        self.seed: int = j["seed"]
        self.case_index: int = j["case_index"]
        self.shrink_steps: int = j["shrink_steps"]
        self.path: str = j["corpus_file"]
        self.shrunk: dict = dict(j["shrunk"], pad=case["pad"], value_family=case["value_family"],
                                 scale_family=case["scale_family"])
        self.original: dict = dict(j["original"])
        self.case: dict = case
        self.target = target
        self.replay: str = j["replay"]

    def inputs(self, device="cpu"):
        """(gating, k, scale) of the shrunk case, laid out exactly as the campaign passed them."""
        return case_inputs(self.case, device)

    def __repr__(self):
        s = self.shrunk
        return (f"Failure(check={self.check!r}, T={s['T']}, E={s['E']}, k={s['k']}, dtype={s['dtype']!r}, "
                f"layout={s['layout']!r}, path={self.path!r})")

    def __str__(self):
        s, o = self.shrunk, self.original
        lines = [f"FAIL [{self.check}] {self.message}",
                 f"  shrunk:  T={s['T']} E={s['E']} k={s['k']} {s['dtype']} {s['layout']} {s['family']}"
                 f" (from T={o['T']} E={o['E']} k={o['k']} {o['dtype']} {o['layout']}, "
                 f"{self.shrink_steps} steps; case #{self.case_index})"]
        lines += ["  " + line for line in self.case["description"].splitlines()]
        if self.path:
            lines.append(f"  saved:   {self.path}")
        lines.append(f"  replay:  {self.replay}")
        if self.path:
            lines.append(f"           moecheck replay {self.path} --target reference   (the case itself, on the fp64 reference)")
        return "\n".join(lines)


class FuzzResult:
    """What moecheck.fuzz found. `passed` is True when no failure was found."""

    def __init__(self, doc: dict, failures: list, calls: int, hard_interrupted: bool, family: str):
        self._doc = doc
        self.target: str = doc["target"]
        self.device: str = doc["device"]["kind"]
        self.family = family
        self.seed: int = doc["seed"]
        self.cases: int = doc["cases"]
        self.rows: int = doc["rows"]
        self.skipped: int = doc["skipped"]
        self.elapsed: float = doc["elapsed_s"]
        self.interrupted: bool = bool(doc["interrupted"] or hard_interrupted)
        self.classes: dict = dict(doc["classes"])
        self.failures: list = failures
        self.calls = calls  # fn calls, shrink candidates included

    @property
    def passed(self) -> bool:
        return not self.failures

    def __bool__(self):
        return self.passed

    def to_json(self) -> str:
        """The results in the campaign schema (moecheck-campaign/1): `moecheck report F -o page.html`."""
        return json.dumps(self._doc, indent=1)

    def write_json(self, path) -> str:
        """Writes to_json() to `path` atomically; returns the path."""
        path = os.fspath(path)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.to_json())
        os.replace(tmp, path)
        return path

    def __repr__(self):
        return (f"FuzzResult(target={self.target!r}, cases={self.cases}, rows={self.rows}, "
                f"failures={len(self.failures)}, interrupted={self.interrupted})")

    def __str__(self):
        rate = self.cases / self.elapsed if self.elapsed > 0 else 0.0
        verdict = "PASSED" if self.passed else f"{len(self.failures)} FAILURE" + ("S" if len(self.failures) > 1 else "")
        head = (f"moecheck.fuzz {self.target} ({self.family}, {self.device}): {self.cases} cases, {self.rows} rows "
                f"in {self.elapsed:.1f} s ({rate:.0f} cases/s), seed {self.seed}")
        if self.skipped:
            head += f", {self.skipped} skipped"
        if self.interrupted:
            head += ", INTERRUPTED"
        return "\n".join([head + f": {verdict}"] + [str(f) for f in self.failures])


# ---- fuzz -------------------------------------------------------------------------------------

def _fn_name(fn) -> str:
    """module.qualname; a functools.partial names its function and bound keywords."""
    if isinstance(fn, functools.partial):
        kw = ",".join(f"{k}={v}" for k, v in sorted(fn.keywords.items()))
        return _fn_name(fn.func) + (f"[{kw}]" if kw else "")
    mod = getattr(fn, "__module__", None) or ""
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    return f"{mod}.{qual}" if mod else qual


def _target_spec(fn, name: Optional[str]) -> str:
    if name is None:
        name = _fn_name(fn)
    # One token (corpus files keep the target on one line with no spaces).
    return "python:" + (re.sub(r"\s+", "_", str(name)) or "fn")


def _python_replay(fn, path: str) -> str:
    mod = getattr(fn, "__module__", None)
    qual = getattr(fn, "__qualname__", "")
    if mod and mod != "__main__" and qual and "<" not in qual:
        return f"python -c \"import moecheck, {mod}; print(moecheck.replay('{path}', {mod}.{qual}))\""
    return f"moecheck.replay('{path}', <fn>)"


def _device_of(device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device: {e}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: torch sees no CUDA device")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _names(arg, known: Sequence[str], what: str, default) -> list:
    if arg is None:
        return list(default)
    if isinstance(arg, str):
        arg = [arg]
    out = [str(a) for a in arg]
    if not out:
        raise ValueError(f"{what}s: empty list")
    for a in out:
        if a not in known:
            raise ValueError(f"unknown {what} {a!r} (known: {', '.join(known)})")
    return out


def _dtype_names(dtypes) -> list:
    if dtypes is None:
        return ["f32", "f16", "bf16"]
    if isinstance(dtypes, (str, torch.dtype)):
        dtypes = [dtypes]
    out = []
    for d in dtypes:
        if isinstance(d, torch.dtype):
            if d not in NAME_BY_DTYPE:
                raise ValueError(f"unsupported dtype {d} (torch.float32, torch.float16, torch.bfloat16)")
            d = NAME_BY_DTYPE[d]
        out.append(str(d))
    if not out:
        raise ValueError("dtypes: empty list")
    return out


def _shard(shard) -> tuple:
    if shard is None:
        return 0, 1
    if isinstance(shard, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not m:
            raise ValueError(f"shard must be 'i/n' or (i, n), got {shard!r}")
        i, n = int(m.group(1)), int(m.group(2))
    else:
        try:
            i, n = (int(x) for x in shard)
        except (TypeError, ValueError):
            raise ValueError(f"shard must be 'i/n' or (i, n), got {shard!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard {i}/{n}: need 0 <= i < n")
    return i, n


def _torch_toolkit(device: torch.device) -> str:
    s = f"python torch={torch.__version__} cuda={torch.version.cuda or 'none'}"
    if device.type == "cuda":
        s += " device=" + torch.cuda.get_device_name(device).replace(" ", "_")
    return s


def _stamp_toolkit(path: str, toolkit: str, since: float) -> None:
    """The core records the torch it was built against (none for the extension, which links no
    torch); the Python side knows the torch that ran fn and records that instead, in files this
    campaign wrote (a file found with the same signature earlier is left as it is)."""
    try:
        if os.path.getmtime(path) < since:
            return
        with open(path) as f:
            lines = f.read().split("\n")
    except OSError:
        return
    changed = False
    for i, line in enumerate(lines):
        if line.startswith("toolkit ") and not line.startswith("toolkit python"):
            lines[i] = "toolkit " + toolkit
            changed = True
            break
        if line.startswith("logits"):
            break
    if changed:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(lines))
        os.replace(tmp, path)


def _default_corpus() -> str:
    return os.path.join(tempfile.gettempdir(), f"moecheck-corpus-{os.getuid() if hasattr(os, 'getuid') else 0}")


class CaseTimeout(Exception):
    """Raised inside fn to interrupt it: it ran past the per-case timeout, or the campaign was
    stopped or its time budget was spent while it ran."""


class _Alarm:
    """SIGALRM handler through which the C++ target interrupts fn (python_target.hpp: it sends
    SIGALRM to the main thread at the timeout, or once a stop or the end of the budget has
    waited out its grace). Installed only in the main thread, where Python runs signal handlers;
    `installed` tells the target whether it may send the signal. An explicit `timeout` outside
    the main thread is refused (it could not interrupt fn)."""

    def __init__(self, runner: _CaseRunner, timeout: Optional[float]):
        self.runner = runner
        self.prev = None
        self.installed = False
        if timeout is not None and threading.current_thread() is not threading.main_thread():
            raise ValueError("timeout needs the main thread (it interrupts fn with SIGALRM)")

    def __call__(self, signum, frame):
        if self.runner.active:  # a late signal after fn returned is ignored
            raise CaseTimeout("fn was interrupted by moecheck (per-case timeout, stop or end of the budget)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.prev = signal.signal(signal.SIGALRM, self)
            self.installed = True
        return self

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGALRM, self.prev)
        return False


class _StopOnSigint:
    """First Ctrl-C: stop after the current case (the core's request_stop; a case still running
    kStopGraceSeconds later is interrupted and not counted). Second: raise KeyboardInterrupt
    inside fn. Installed only in the main thread."""

    def __init__(self, log):
        self.count = 0
        self.prev = None
        self.installed = False
        self.log = log

    def __call__(self, signum, frame):
        self.count += 1
        if self.count == 1:
            _core.request_stop()
            self.log("\nmoecheck: stopping after the current case (interrupted if it runs 0.5 s more; "
                     "Ctrl-C again to interrupt fn now)\n")
        else:
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self.prev = signal.signal(signal.SIGINT, self)
                self.installed = True
            except ValueError:
                pass
        return self

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGINT, self.prev)
        return False


def fuzz(fn: RoutingFn, *, family: str, device="cpu", seconds: Optional[float] = None,
         cases: Optional[int] = None, seed: int = 1, dtypes=("f32", "f16", "bf16"), max_T: int = 1024,
         max_E: int = 2048, max_k: int = 32, layouts=None, corpus=None, shard=None, values=None,
         scales=None, compute: str = "f32", max_failures: int = 16, shrink_attempts: int = 4000,
         name: Optional[str] = None, progress: Optional[bool] = None, log=None,
         timeout: Optional[float] = None) -> FuzzResult:
    """Differential fuzzing of a routing callable against moecheck's fp64 reference.

    fn(gating, k, scale) -> (weights, ids)
        gating  torch.Tensor [T, E] of the case's dtype on `device`; possibly a padded,
                transposed or strided view (like the C++ layouts: as_strided over the storage);
        k       int, experts per token;
        scale   float32 Tensor [E] (per_expert_scale) for family "gemma4", None otherwise;
        returns float32 weights [T, k] and int32 or int64 ids [T, k] on the same device.
    fn runs under torch.no_grad(). Exceptions it raises (also SystemExit) and outputs of the wrong
    kind, shape, dtype or device are findings (check "crash"), shrunk and saved like any other.

    family   "gemma4", "softmax_topk", "softmax_topk_raw" or "sigmoid_top1"
    seconds / cases   budget (either or both; neither: DEFAULT_CASES cases)
    dtypes, layouts, values, scales   restrict the generated cases (names as in the C++ core;
             values: moecheck's value families, scales: its scale families)
    corpus   folder for the shrunk .case files (default: <tmp>/moecheck-corpus-<uid>)
    shard    "i/n" or (i, n): cases whose global index is i mod n (shards partition a campaign)
    compute  dtype fn computes its weights in ("f32", "f16", "bf16"): sets the oracle's bounds
    name     target name recorded in results and corpus files (default: fn's module.qualname)
    progress progress line on stderr (default: when stderr is a terminal); log: a callable
             receiving the engine's text (default: sys.stderr.write)
    timeout  per-case limit in seconds (the campaign's case timeout; default DEFAULT_TIMEOUT,
             60 s): a call running longer is interrupted (CaseTimeout raised inside fn through
             SIGALRM, main thread only) and the case is a finding (check "timeout"), shrunk and
             saved. It interrupts Python code and returns from torch ops; a call that does not
             return to Python (a hung kernel) cannot be interrupted in-process, and one that
             returns late is still a "timeout". A call still running 1.5 s after the end of
             `seconds` is interrupted and not counted. Nothing here ever ends the interpreter.

    Ctrl-C stops after the current case and returns what was found (result.interrupted).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if family not in FAMILIES:
        raise ValueError(f"unknown routing family {family!r} (known: {', '.join(CALLABLE_FAMILIES)})")
    if family not in CALLABLE_FAMILIES:
        raise ValueError(f"family {family!r} needs a selection bias and expert groups, which "
                         f"fn(gating, k, scale) cannot take (supported: {', '.join(CALLABLE_FAMILIES)})")
    dev = _device_of(device)
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    if cases is not None and int(cases) < 1:
        raise ValueError(f"cases must be >= 1, got {cases!r}")
    if seconds is None and cases is None:
        cases = DEFAULT_CASES
    shard_index, shard_count = _shard(shard)
    spec = _target_spec(fn, name)
    corpus_dir = os.fspath(corpus) if corpus is not None else _default_corpus()
    if log is None:
        def log(text):
            sys.stderr.write(text)
            sys.stderr.flush()
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    runner = _CaseRunner(fn, dev)
    started = time.time() - 1.0
    with _StopOnSigint(log), _Alarm(runner, timeout) as alarm:
        text, shrunk, hard, calls = _core.fuzz(
            runner, spec, dev.type, [family], int(seed) & 0xFFFFFFFFFFFFFFFF, float(seconds or 0),
            int(cases or 0), shard_index, shard_count, _dtype_names(dtypes),
            _names(layouts, ("contiguous", "padded", "transposed", "strided"), "layout", ()),
            _names(values, _core.value_families(), "value family", ()),
            _names(scales, _core.scale_families(), "scale family", ()),
            int(max_T), int(max_E), int(max_k), corpus_dir, int(max_failures), int(shrink_attempts),
            bool(progress), log, str(compute), float(timeout or DEFAULT_TIMEOUT), alarm.installed)
    doc = json.loads(text)
    toolkit = _torch_toolkit(dev)
    doc["tool"]["torch"] = torch.__version__
    doc["tool"]["python"] = sys.version.split()[0]
    if dev.type == "cuda":
        doc["tool"]["cuda"] = torch.version.cuda or doc["tool"]["cuda"]
        doc["device"]["name"] = torch.cuda.get_device_name(dev)
    failures = []
    for j, case in zip(doc["failure_list"], shrunk):
        if j["corpus_file"]:
            _stamp_toolkit(j["corpus_file"], toolkit, started)
            j["replay"] = _python_replay(fn, j["corpus_file"])
        failures.append(Failure(j, case, spec))
    if hard:
        doc["interrupted"] = True
    return FuzzResult(doc, failures, calls, hard, family)


# ---- replay -----------------------------------------------------------------------------------

class ReplayEntry:
    """One replayed .case file: outcome "pass", "fail", "skipped" or "error"; ok when the outcome
    is what the entry asks for (a case recorded for another implementation must pass)."""

    def __init__(self, d: dict):
        self.path: str = d["path"]
        self.target: str = d["target"]
        self.outcome: str = d["outcome"]
        self.ok: bool = d["ok"]
        self.detail: str = d["detail"]
        self.expect: str = d["expect"]
        self.recorded_target: str = d["recorded_target"]
        self.case: Optional[dict] = d["case"]

    def inputs(self, device="cpu"):
        """(gating, k, scale) of the entry's case, laid out as replay passes them."""
        if self.case is None:
            raise ValueError(f"{self.path}: no case ({self.detail})")
        return case_inputs(self.case, device)

    def __repr__(self):
        return f"ReplayEntry({self.path!r}, outcome={self.outcome!r}, ok={self.ok})"

    def __str__(self):
        tag = ("SKIP " if self.outcome == "skipped" else "ok   ") if self.ok else "FAIL "
        s = f"{tag}{self.path} [{self.target}: {self.outcome}]"
        if self.detail and (not self.ok or self.outcome == "skipped"):
            s += f"\n     {self.detail}"
            if self.case is not None and not self.ok:
                s += "\n" + "\n".join("     " + l for l in self.case["description"].splitlines())
        return s


class ReplayReport:
    """Results of moecheck.replay; `passed` when every entry matched (errors do not)."""

    def __init__(self, entries: list):
        self.entries: list = entries

    @property
    def passed(self) -> bool:
        return all(e.ok for e in self.entries)

    def __bool__(self):
        return self.passed

    def __iter__(self):
        return iter(self.entries)

    def __len__(self):
        return len(self.entries)

    def __str__(self):
        bad = sum(not e.ok for e in self.entries)
        skipped = sum(e.ok and e.outcome == "skipped" for e in self.entries)
        lines = [str(e) for e in self.entries]
        lines.append(f"{len(self.entries)} corpus entries: {len(self.entries) - bad - skipped} matched, "
                     f"{skipped} skipped, {bad} did not match")
        return "\n".join(lines)

    def __repr__(self):
        return f"ReplayReport({len(self.entries)} entries, passed={self.passed})"


def replay(path_or_folder, fn: Union[RoutingFn, str, None] = None, *, family=None, device="cpu",
           compute: str = "f32", name: Optional[str] = None, timeout: Optional[float] = None) -> ReplayReport:
    """Replays .case files (files or folders, recursively) against `fn`.

    fn a routing callable (as for fuzz): entries recorded for this callable (same name) must do
       what they record (`expect`); entries recorded for anything else (a kernel, a planted bug,
       another function) are regression inputs the callable must pass. Entries of a family not in
       `family` (a name or a list; default: every family fn can take) are skipped.
    fn a string: a built-in target of the core ("reference", "kernel:auto", ...), replayed like
       `moecheck replay PATH --target fn`; fn None: each entry against its own target.
    timeout  per-entry limit in seconds for a callable (default: none): a call running longer is
       interrupted as in fuzz and the entry fails with check "timeout".
    """
    paths = [os.fspath(p) for p in (path_or_folder if isinstance(path_or_folder, (list, tuple))
                                    else [path_or_folder])]
    if fn is None or isinstance(fn, str):
        res = _core.replay(paths, None, fn or "", "cpu", [], compute)
    else:
        if not callable(fn):
            raise TypeError(f"fn must be a callable, a target name or None, got {type(fn).__name__}")
        dev = _device_of(device)
        fams = _names(family, CALLABLE_FAMILIES, "family", ())
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        runner = _CaseRunner(fn, dev)
        with _StopOnSigint(lambda s: sys.stderr.write(s)), _Alarm(runner, timeout) as alarm:
            res = _core.replay(paths, runner, _target_spec(fn, name), dev.type, fams, compute,
                               float(timeout) if timeout is not None else float("inf"), alarm.installed)
    return ReplayReport([ReplayEntry(d) for d in res])


# ---- one case ---------------------------------------------------------------------------------

class Verdict:
    """The oracle's verdict on one case: kind "pass", "fail" or "skipped"; check and message of
    the first violation; report: the oracle's summary text."""

    def __init__(self, d: dict):
        self.kind: str = d["kind"]
        self.check: str = d["check"]
        self.message: str = d["message"]
        self.report: str = d["report"]["text"]
        self.violations: list = d["report"]["violations"]

    @property
    def passed(self) -> bool:
        return self.kind != "fail"

    def __bool__(self):
        return self.passed

    def __repr__(self):
        return f"Verdict({self.kind!r}, check={self.check!r})"

    def __str__(self):
        return self.kind.upper() + (f" [{self.check}] {self.message}" if self.kind == "fail" else "")


def check(fn: RoutingFn, gating: torch.Tensor, k: int, scale: Optional[torch.Tensor] = None, *,
          family: str = "gemma4", device=None, compute: str = "f32", name: Optional[str] = None) -> Verdict:
    """Runs fn on one given problem (gating [T, E] f32/f16/bf16, k, scale [E] for gemma4) and judges
    its outputs with the tie-aware oracle, exactly as a campaign judges a generated case."""
    if gating.dim() != 2:
        raise ValueError(f"gating must be [T, E], got shape {list(gating.shape)}")
    if gating.dtype not in NAME_BY_DTYPE:
        raise ValueError(f"gating dtype {gating.dtype} is not float32, float16 or bfloat16")
    if family not in CALLABLE_FAMILIES:
        raise ValueError(f"unknown routing family {family!r} (known: {', '.join(CALLABLE_FAMILIES)})")
    dev = _device_of(device if device is not None else gating.device)
    T, E = gating.shape
    s = None
    if scale is not None and family == "gemma4":
        s = as_f32_cpu(scale)
    d = _core.evaluate_case(_CaseRunner(fn, dev), _target_spec(fn, name), dev.type, family,
                            NAME_BY_DTYPE[gating.dtype], int(T), int(E), int(k), as_f32_cpu(gating), s,
                            compute)
    return Verdict(d)
