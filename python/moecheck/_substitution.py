"""Functional substitution checks for any nn.Module (moecheck.check_substitution) and for MoE
routing (moecheck.check_routing_substitution).

The stale-capture bug class: a module whose forward reads a parameter through something captured
at construction (a closure, functools.partial, a copy, a data pointer) ignores
torch.func.functional_call's substitution, so functional transforms (vmap over parameters,
ensembling, torch.func.grad, stateless calls) silently use the old value.

Properties, for each parameter and buffer (a tied group counts once):
  functional = in place   functional_call(module, {name: v}, inputs) equals the module's output
                          with v written into the parameter in place (bitwise on the CPU; on
                          other devices within a dtype tolerance). The in-place reference writes
                          into the module's own tensor (restored bitwise afterwards): a deep copy
                          would not do, since Python copies functions by reference and a closure
                          in the copy would still read the original's tensor.
  restoration             after functional_call, also one whose forward raises, every slot holds
                          the same tensor object with the same storage, data pointer, metadata,
                          values and requires_grad.
  reaches the output      some substituted value changes the output (unless allow_unused).
Values come from the C++ generators (moecheck._core.values): dyadic rationals exact in every
dtype, normal values and adversarial ones (zeros, signed zeros, powers of two, the dtype's
extremes, ties); a counterexample is shrunk towards zeros and ones before it is reported.
"""

from __future__ import annotations

import copy
import zlib
from typing import Callable, Iterable, Optional, Sequence

import torch

from . import _core
from ._fuzz import Verdict
from ._tensors import NAME_BY_DTYPE, as_f32_cpu

_KINDS = ("dyadic", "normal", "adversarial")


# ---- values ---------------------------------------------------------------------------------------

def substitution_values(shape, dtype=torch.float32, *, seed: int = 1, kind: str = "dyadic",
                        device="cpu") -> torch.Tensor:
    """A tensor of `shape` with values from the C++ generators, exact in `dtype`:
    kind "dyadic" (m / 2^j, |m| <= 16, j <= 4), "normal" or "adversarial"."""
    shape = tuple(int(s) for s in shape)
    n = 1
    for s in shape:
        n *= s
    gen_dtype = NAME_BY_DTYPE.get(dtype, "f32")  # float64 takes f32 values (exact in it)
    buf = bytearray(_core.values(int(seed) & 0xFFFFFFFFFFFFFFFF, n, gen_dtype, kind))
    t = torch.frombuffer(buf, dtype=torch.float32) if n else torch.empty(0)
    return t.reshape(shape).to(dtype=dtype, device=device)


def _value_seed(seed: int, name: str, i: int) -> int:
    return _core.case_seed(int(seed) & 0xFFFFFFFFFFFFFFFF, i) ^ zlib.crc32(name.encode())


# ---- comparisons ----------------------------------------------------------------------------------

def _tolerance(dtype: torch.dtype):
    return {torch.float16: (1e-3, 1e-5), torch.bfloat16: (1e-2, 1e-5)}.get(dtype, (1e-5, 1e-7))


def _same(a, b, exact: bool) -> bool:
    """Outputs equal: tensors bitwise (exact) or within the dtype's tolerance (NaN == NaN);
    tuples, lists and dicts element by element; anything else with ==."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        a, b = a.detach(), b.detach()
        if exact or not a.is_floating_point():
            if a.is_floating_point() or a.is_complex():
                a = a.cpu().reshape(-1).contiguous().view(torch.uint8)
                b = b.cpu().reshape(-1).contiguous().view(torch.uint8)
            return bool(torch.equal(a.cpu(), b.cpu()))
        rtol, atol = _tolerance(a.dtype)
        return bool(torch.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y, exact) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key], exact) for key in a)
    try:
        return bool(a == b)
    except Exception:
        return a is b


def _max_diff(a, b) -> str:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape:
        if a.is_floating_point() and b.is_floating_point():
            d = (a.detach().double() - b.detach().double()).abs()
            d = torch.where(torch.isnan(d), torch.full_like(d, float("inf")), d)
            return f"max |difference| {d.max().item() if d.numel() else 0:.6g}"
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if not _same(x, y, True):
                return f"output[{i}]: {_max_diff(x, y)}"
    return "outputs differ"


# ---- module slots ---------------------------------------------------------------------------------

class _Slot:
    """A parameter or buffer; `names` lists every name of its tied group, the first is used."""

    def __init__(self, names, tensor, kind):
        self.names = names
        self.tensor = tensor
        self.kind = kind

    @property
    def name(self):
        return self.names[0]


def _slots(module: torch.nn.Module) -> list:
    by_id, out = {}, []
    for kind, items in (("parameter", module.named_parameters(remove_duplicate=False)),
                        ("buffer", module.named_buffers(remove_duplicate=False))):
        for name, t in items:
            if t is None:
                continue
            if id(t) in by_id:
                by_id[id(t)].names.append(name)
            else:
                by_id[id(t)] = s = _Slot([name], t, kind)
                out.append(s)
    return out


def _fingerprint(module: torch.nn.Module) -> list:
    fp = []
    for kind, items in (("parameter", module.named_parameters(remove_duplicate=False)),
                        ("buffer", module.named_buffers(remove_duplicate=False))):
        for name, t in items:
            fp.append((kind, name, id(t), t.untyped_storage().data_ptr(), t.data_ptr(), tuple(t.shape),
                       t.stride(), t.storage_offset(), t.dtype, str(t.device), t.requires_grad,
                       t.detach().clone()))
    return fp


def _compare_fingerprints(before: list, after: list) -> str:
    if len(before) != len(after):
        return f"the module had {len(before)} parameters and buffers before and {len(after)} after"
    fields = ("kind", "name", "tensor object", "storage", "data pointer", "shape", "strides",
              "storage offset", "dtype", "device", "requires_grad")
    for b, a in zip(before, after):
        for i, f in enumerate(fields):
            if b[i] != a[i]:
                return f"{b[0]} '{b[1]}': {f} changed ({b[i]!r} -> {a[i]!r})"
        if not _same(b[-1], a[-1], True):
            return f"{b[0]} '{b[1]}': values changed"
    return ""


class _Raise(Exception):
    """Raised by a temporary forward hook to test restoration on the exception path."""


def _raise_hook(module, inputs, output):
    raise _Raise()


def _functional(module, name, v, args, kwargs):
    return torch.func.functional_call(module, {name: v}, args, kwargs)


def _in_place(module, slot, v, args, kwargs):
    t = slot.tensor
    saved = t.detach().clone()
    try:
        with torch.no_grad():
            t.copy_(v)
        return module(*args, **kwargs)
    finally:
        with torch.no_grad():
            t.copy_(saved)


def _call(f, *a):
    """(output, None) or (None, "TypeName: message")."""
    try:
        return f(*a), None
    except Exception as e:
        lines = str(e).strip().splitlines()
        return None, f"{type(e).__name__}: {lines[0] if lines else ''}"


# ---- reproduction text ----------------------------------------------------------------------------

def _tensor_literal(v: torch.Tensor) -> str:
    """Python source recreating v (small, or mostly zeros); "" when it would be too long."""
    dt = str(v.dtype)
    flat = v.detach().cpu().reshape(-1).double()
    shape = list(v.shape)
    if flat.numel() <= 16:
        return f"torch.tensor({[float(x) for x in flat.tolist()]!r}, dtype={dt}).reshape({shape})"
    nz = torch.nonzero(flat).reshape(-1)
    if nz.numel() <= 16:
        idx = nz.tolist()
        vals = [float(x) for x in flat[nz].tolist()]
        return (f"torch.zeros({shape}, dtype={dt}); v.view(-1)[{idx!r}] = torch.tensor({vals!r}, dtype={dt})"
                if idx else f"torch.zeros({shape}, dtype={dt})")
    return ""


def _value_source(v: torch.Tensor, name: str) -> str:
    lit = _tensor_literal(v)
    if lit:
        return f"v = {lit}"
    import tempfile
    path = tempfile.mktemp(prefix=f"moecheck-{name.replace('.', '_')}-", suffix=".pt")
    torch.save(v.detach().cpu(), path)
    return f"v = torch.load({path!r})  # {list(v.shape)} {v.dtype}"


def _reproduction(slot, v) -> str:
    getter = "get_parameter" if slot.kind == "parameter" else "get_buffer"
    dev = f".to({str(v.device)!r})" if v.device.type != "cpu" else ""
    return "\n".join([
        "import torch",
        "# module and example_inputs: the objects given to moecheck.check_substitution",
        _value_source(v, slot.name) + dev,
        f"out_functional = torch.func.functional_call(module, {{{slot.name!r}: v}}, example_inputs)",
        f"t = module.{getter}({slot.name!r}); saved = t.detach().clone()",
        "with torch.no_grad(): t.copy_(v)",
        "out_in_place = module(*example_inputs)",
        "with torch.no_grad(): t.copy_(saved)",
        "print(out_functional, out_in_place)  # differ: the substitution does not reach forward",
    ])


def _unused_reproduction(slot, v) -> str:
    dev = f".to({str(v.device)!r})" if v.device.type != "cpu" else ""
    return "\n".join([
        "import torch",
        "# module and example_inputs: the objects given to moecheck.check_substitution",
        _value_source(v, slot.name) + dev,
        f"out_functional = torch.func.functional_call(module, {{{slot.name!r}: v}}, example_inputs)",
        "print(out_functional, module(*example_inputs))  # equal: the substituted value is not used",
    ])


# ---- shrinking --------------------------------------------------------------------------------------

def _shrink(v: torch.Tensor, fails: Callable[[torch.Tensor], bool], budget: int) -> torch.Tensor:
    """Greedy: the whole tensor to 0 or 1, then blocks (halves, quarters, ... single elements)
    to 0, then the remaining elements to 1, keeping each change that still fails."""
    calls = [0]

    def attempt(c):
        if calls[0] >= budget:
            return False
        calls[0] += 1
        return fails(c)

    for fill in (0.0, 1.0):
        c = torch.full_like(v, fill)
        if not _same(c, v, True) and attempt(c):
            return c
    for fill in (0.0, 1.0):
        n = v.numel()
        block = max(n // 2, 1)
        while block >= 1 and calls[0] < budget:
            start = 0
            while start < n and calls[0] < budget:
                flat = v.reshape(-1)
                seg = flat[start:start + block]
                if not bool((seg == fill).all()):
                    c = v.clone()
                    c.reshape(-1)[start:start + block] = fill
                    if attempt(c):
                        v = c
                start += block
            if block == 1:
                break
            block //= 2
    return v


# ---- reports ------------------------------------------------------------------------------------------

class PropertyFailure:
    def __init__(self, prop: str, message: str, value: Optional[torch.Tensor], reproduction: str):
        self.property = prop
        self.message = message
        self.value = value
        self.reproduction = reproduction

    def __str__(self):
        s = f"[{self.property}] {self.message}"
        if self.reproduction:
            s += "\n    reproduce:\n" + "\n".join("      " + l for l in self.reproduction.splitlines())
        return s


class ParameterResult:
    """Results for one parameter or buffer (tied names listed in `names`)."""

    def __init__(self, slot: _Slot):
        self.name: str = slot.name
        self.names: list = list(slot.names)
        self.kind: str = slot.kind
        self.failures: list = []
        self.cases = 0
        self.reached = False
        self.skipped = ""

    @property
    def passed(self) -> bool:
        return not self.failures

    def __str__(self):
        tied = f" (tied: {', '.join(self.names[1:])})" if len(self.names) > 1 else ""
        if self.skipped:
            return f"SKIP {self.kind} {self.name}{tied}: {self.skipped}"
        head = f"{'ok  ' if self.passed else 'FAIL'} {self.kind} {self.name}{tied}: {self.cases} cases"
        return "\n".join([head] + ["  " + str(f).replace("\n", "\n  ") for f in self.failures])


class SubstitutionReport:
    """moecheck.check_substitution's results: `passed`, `results` (ParameterResult per slot),
    `report[name]`, readable str()."""

    def __init__(self, title: str, results: list):
        self.title = title
        self.results: list = results

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def __bool__(self):
        return self.passed

    def __getitem__(self, name: str) -> ParameterResult:
        for r in self.results:
            if name in r.names:
                return r
        raise KeyError(name)

    @property
    def failures(self) -> list:
        return [r for r in self.results if not r.passed]

    def __str__(self):
        bad = len(self.failures)
        head = f"{self.title}: {len(self.results)} parameters/buffers, " + ("PASSED" if not bad else f"{bad} FAILED")
        return "\n".join([head] + [str(r) for r in self.results])

    def __repr__(self):
        return f"SubstitutionReport({len(self.results)} slots, passed={self.passed})"


# ---- check_substitution ---------------------------------------------------------------------------

def _as_args(example_inputs):
    if isinstance(example_inputs, tuple):
        return example_inputs
    if isinstance(example_inputs, list):
        return tuple(example_inputs)
    return (example_inputs,)


def check_substitution(module: torch.nn.Module, example_inputs, *, params: Optional[Iterable[str]] = None,
                       cases: int = 100, seed: int = 1, allow_unused: Sequence[str] = (),
                       kwargs: Optional[dict] = None, exact: Optional[bool] = None,
                       shrink_budget: int = 200) -> SubstitutionReport:
    """Checks functional = in place, restoration and reaches-the-output for every parameter and
    buffer of `module` (or those named in `params`), `cases` substituted values each.

    example_inputs  the positional arguments of forward (a tuple, or one tensor); kwargs: keyword ones
    allow_unused    names whose substitution may leave the output unchanged
    exact           bitwise comparison (default: on the CPU); else a dtype tolerance
    Non-floating-point slots are skipped. Raises ValueError for unknown names or a module whose
    output changes between two identical calls (dropout in training mode: call module.eval()).
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}")
    args, kwargs = _as_args(example_inputs), dict(kwargs or {})
    slots = _slots(module)
    known = {n for s in slots for n in s.names}
    if params is not None:
        params = [params] if isinstance(params, str) else list(params)
        unknown = [p for p in params if p not in known]
        if unknown:
            raise ValueError(f"unknown parameter or buffer name(s) {unknown} (known: {sorted(known)})")
        slots = [s for s in slots if any(n in params for n in s.names)]
    unknown = [a for a in allow_unused if a not in known]
    if unknown:
        raise ValueError(f"allow_unused names no parameter or buffer: {unknown} (known: {sorted(known)})")

    with torch.no_grad():
        base, err = _call(lambda: module(*args, **kwargs))
        if err:
            raise ValueError(f"the module raised on example_inputs: {err}")
        again = module(*args, **kwargs)
    device_cpu = all(s.tensor.device.type == "cpu" for s in slots)
    exact = device_cpu if exact is None else exact
    if not _same(base, again, exact):
        raise ValueError("the module's output changes between two identical calls (dropout in training "
                         "mode? call module.eval()); substitution cannot be judged")

    results = []
    for slot in slots:
        r = ParameterResult(slot)
        results.append(r)
        t = slot.tensor
        if not t.is_floating_point():
            r.skipped = f"{t.dtype} is not a floating-point dtype"
            continue
        before = _fingerprint(module)
        failed_props = set()
        for i in range(cases):
            v = substitution_values(t.shape, t.dtype, seed=_value_seed(seed, slot.name, i),
                                    kind=_KINDS[i % len(_KINDS)], device=t.device)
            if _same(v, t.detach(), True):
                continue  # the current value: nothing to observe
            r.cases += 1
            with torch.no_grad():
                out_f, err_f = _call(_functional, module, slot.name, v, args, kwargs)
                diff = _compare_fingerprints(before, _fingerprint(module))
                if diff and "restoration" not in failed_props:
                    failed_props.add("restoration")
                    r.failures.append(PropertyFailure("restoration", "after functional_call: " + diff, v, ""))
                out_r, err_r = _call(_in_place, module, slot, v, args, kwargs)
            if err_f is None and not _same(out_f, base, exact):
                r.reached = True

            def mismatch(c):
                with torch.no_grad():
                    a, ea = _call(_functional, module, slot.name, c, args, kwargs)
                    b, eb = _call(_in_place, module, slot, c, args, kwargs)
                if ea or eb:
                    return (ea is None) != (eb is None)
                return not _same(a, b, exact)

            if "functional = in place" not in failed_props and ((err_f is None) != (err_r is None) or (
                    err_f is None and not _same(out_f, out_r, exact))):
                failed_props.add("functional = in place")
                small = _shrink(v, mismatch, shrink_budget)
                with torch.no_grad():
                    a, ea = _call(_functional, module, slot.name, small, args, kwargs)
                    b, eb = _call(_in_place, module, slot, small, args, kwargs)
                if ea or eb:
                    what = f"functional_call {'raised ' + ea if ea else 'returned'}, in place {'raised ' + eb if eb else 'returned'}"
                else:
                    what = _max_diff(a, b)
                r.failures.append(PropertyFailure(
                    "functional = in place",
                    f"functional_call(module, {{'{slot.name}': v}}, ...) differs from writing v into "
                    f"the {slot.kind} in place ({what}); forward does not read the {slot.kind} through "
                    f"the module (captured by a closure, a copy or a pointer?)", small, _reproduction(slot, small)))
            # restoration on the exception path: a forward hook raises after forward ran
            if i == 0:
                handle = module.register_forward_hook(_raise_hook)
                try:
                    try:
                        with torch.no_grad():
                            _functional(module, slot.name, v, args, kwargs)
                    except _Raise:
                        pass
                    except Exception:
                        pass
                finally:
                    handle.remove()
                diff = _compare_fingerprints(before, _fingerprint(module))
                if diff and "restoration" not in failed_props:
                    failed_props.add("restoration")
                    r.failures.append(PropertyFailure(
                        "restoration", "after a functional_call whose forward raised: " + diff, v, ""))
        if r.cases and not r.reached and not any(n in allow_unused for n in slot.names):
            r.failures.append(PropertyFailure(
                "reaches the output",
                f"substituting {slot.kind} '{slot.name}' changed the output in none of {r.cases} cases "
                f"(forward reads a captured copy, or it is unused: list it in allow_unused)", None,
                _unused_reproduction(slot, substitution_values(t.shape, t.dtype, seed=_value_seed(seed, slot.name, 0),
                                                               kind="dyadic", device=t.device))))
    return SubstitutionReport(f"moecheck.check_substitution({type(module).__name__})", results)


# ---- routing ---------------------------------------------------------------------------------------

class _RouterCall(torch.nn.Module):
    """Holds the user's module as a submodule, so functional_call can substitute its parameters
    while router(module, *inputs) runs (public API only)."""

    def __init__(self, inner, router):
        super().__init__()
        self.inner = inner
        self._router = router

    def forward(self, *args):
        return self._router(self.inner, *args)


def substituted_call(module: torch.nn.Module, tensors: dict, fn, *args):
    """fn(module, *args) with `tensors` ({dotted name: tensor}) substituted functionally
    (torch.func.functional_call), e.g. a router that is not the module's forward."""
    wrapper = _RouterCall(module, fn)
    return torch.func.functional_call(wrapper, {"inner." + k: v for k, v in tensors.items()}, args)


def check_outputs(logits, weights, ids, scale=None, *, family: str = "gemma4", compute: str = "f32",
                  contract: str = "") -> Verdict:
    """Judges routing outputs (weights [T, k], ids [T, k]) for logits [T, E] and scale [E] with the
    tie-aware oracle (the C++ check_outputs, as `moecheck check` does), by `contract`: a built-in
    name ("strict", "probability-ranked", "nan-zeroes-row", ...), a contract file or a one-line spec
    ("" = strict). Takes torch tensors or NumPy arrays. An input outside the contract's domain is
    not judged: the verdict is "skipped" (it passes) and its message says why."""
    logits, weights, ids = (x if isinstance(x, torch.Tensor) else torch.as_tensor(x) for x in (logits, weights, ids))
    if scale is not None and not isinstance(scale, torch.Tensor):
        scale = torch.as_tensor(scale)
    if logits.dim() != 2:
        raise ValueError(f"logits must be [T, E], got shape {list(logits.shape)}")
    if logits.dtype not in NAME_BY_DTYPE:
        raise ValueError(f"logits dtype {logits.dtype} is not float32, float16 or bfloat16")
    T, E = logits.shape
    if weights.dim() != 2 or ids.shape != weights.shape or weights.shape[0] != T:
        raise ValueError(f"weights and ids must be [T, k] = [{T}, k], got {list(weights.shape)} and {list(ids.shape)}")
    k = int(weights.shape[1])
    s = as_f32_cpu(scale) if (scale is not None and family == "gemma4") else None
    ids_cpu = ids.detach().cpu().contiguous()
    if ids_cpu.dtype not in (torch.int32, torch.int64):
        ids_cpu = ids_cpu.to(torch.int64)
    rep = _core.check_outputs(family, NAME_BY_DTYPE[logits.dtype], int(T), int(E), k, as_f32_cpu(logits), s,
                              as_f32_cpu(weights), ids_cpu, compute, 8, contract)
    v = rep["violations"]
    if rep["outside"]:  # not judged: the contract does not cover this input
        return Verdict({"kind": "skipped", "check": "", "message": rep["text"], "report": rep})
    return Verdict({"kind": "pass" if rep["ok"] else "fail", "check": v[0]["check"] if v else "",
                    "message": v[0]["text"] if v else "", "report": rep})


def check_routing_substitution(module: torch.nn.Module, router, scale_param: str = "per_expert_scale",
                               example_inputs=None, *, cases: int = 100, seed: int = 1, compute: str = "f32",
                               shrink_budget: int = 200) -> SubstitutionReport:
    """Substitutes `scale_param` functionally and checks that the routing weights follow the fp64
    reference for the substituted scale (gemma4: softmax -> top-k -> renormalise -> x scale[id],
    tie-aware oracle), plus restoration.

    router(module, *example_inputs) -> (weights [T, k], ids [T, k], logits [T, E]) is the routing
    as the module computes it (e.g. lambda m, x: m.route(x)). example_inputs: a tensor or a tuple.
    A failure is shrunk (fewer rows of the first input, scale entries towards 1 and 0) and
    reported with a reproduction."""
    if example_inputs is None:
        raise ValueError("example_inputs: the router's inputs are needed (a tensor or a tuple)")
    args = _as_args(example_inputs)
    slots = {n: s for s in _slots(module) for n in s.names}
    if scale_param not in slots:
        raise ValueError(f"module has no parameter or buffer {scale_param!r} (known: {sorted(slots)})")
    slot = slots[scale_param]
    t = slot.tensor
    r = ParameterResult(slot)
    before = _fingerprint(module)

    def route(v, a):
        with torch.no_grad():
            out = substituted_call(module, {scale_param: v}, router, *a)
        if not (isinstance(out, (tuple, list)) and len(out) == 3):
            raise TypeError(f"router must return (weights, ids, logits), got {type(out).__name__}")
        return out

    def verdict(v, a):
        try:
            w, ids, logits = route(v, a)
            return check_outputs(logits, w.float(), ids, v, family="gemma4", compute=compute)
        except Exception as e:
            lines = str(e).strip().splitlines()
            return Verdict({"kind": "fail", "check": "crash", "message": f"{type(e).__name__}: {lines[0] if lines else ''}",
                            "report": {"text": "", "violations": []}})

    for i in range(cases):
        v = substitution_values(t.shape, t.dtype, seed=_value_seed(seed, scale_param, i),
                                kind=_KINDS[i % len(_KINDS)], device=t.device)
        r.cases += 1
        first = verdict(v, args)
        diff = _compare_fingerprints(before, _fingerprint(module))
        if diff:
            r.failures.append(PropertyFailure("restoration", "after the substituted routing call: " + diff, v, ""))
            break
        if first.passed:
            continue
        check = first.check
        # shrink: fewer rows of the first input, then simpler scale values
        a = list(args)
        rows_expr = ""
        if isinstance(a[0], torch.Tensor) and a[0].dim() >= 1 and a[0].shape[0] > 1:
            rows = [int(x["row"]) for x in first.violations if x.get("row", -1) >= 0][:1]
            for lo, hi in [(rw, rw + 1) for rw in rows] + [(0, 1), (0, max(1, a[0].shape[0] // 2))]:
                trial = [a[0][lo:hi]] + a[1:]
                if verdict(v, tuple(trial)).check == check:
                    a, rows_expr = trial, f"[{lo}:{hi}]"
                    break
        a = tuple(a)
        small = _shrink(v, lambda c: verdict(c, a).check == check, shrink_budget)
        final = verdict(small, a)
        repro = "\n".join([
            "import torch, moecheck",
            "# module, router: the objects given to moecheck.check_routing_substitution",
            _value_source(small, scale_param),
            "args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)",
            "x = (args[0]" + rows_expr + ",) + tuple(args[1:])" + ("  # the failing rows" if rows_expr else ""),
            f"w, ids, logits = moecheck.substituted_call(module, {{{scale_param!r}: v}}, router, *x)",
            "print(moecheck.check_outputs(logits, w.float(), ids, v))",
        ])
        msg = (f"routing with {scale_param} substituted disagrees with the fp64 reference for the new scale "
               f"(shrunk to {a[0].shape[0] if isinstance(a[0], torch.Tensor) and a[0].dim() else '?'} input row(s)): "
               f"[{final.check}] {final.message}")
        r.failures.append(PropertyFailure("routing follows the substituted scale", msg, small, repro))
        break
    return SubstitutionReport(f"moecheck.check_routing_substitution({type(module).__name__}, {scale_param})", [r])
