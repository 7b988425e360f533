"""`moecheck check` on files written by NumPy itself (np.save, every header version, Fortran
order, big-endian, float16, bfloat16 bits as uint16, float64 and int32/int64 arrays): the outputs
of a NumPy reference router pass, a wrong router's rows are listed, malformed files are exit 2.

Usage: check_numpy_test.py MOECHECK_EXE   (exit 77 = skipped: NumPy is not installed)
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("numpy is not installed: skipped")
    sys.exit(77)

EXE = sys.argv[1]
failures = []


def run(*args):
    p = subprocess.run([EXE, "check", *args], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def expect(what, rc_want, args, *needles):
    rc, out = run(*args)
    if rc != rc_want:
        failures.append(f"{what}: exit {rc}, expected {rc_want}\n{out}")
        return
    for n in needles:
        if n not in out:
            failures.append(f"{what}: output lacks {n!r}\n{out}")


def gemma4_reference(logits, scale, k):
    """softmax over all E (float64) -> top-k (ties to the lower index) -> renormalise -> x scale[id]."""
    x = logits.astype(np.float64)
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ids = np.argsort(-x, axis=1, kind="stable")[:, :k]
    w = np.take_along_axis(p, ids, axis=1)
    w /= w.sum(axis=1, keepdims=True)
    return w * scale[ids], ids


def main():
    rng = np.random.default_rng(20261201)
    T, E, k = 300, 32, 4
    logits = rng.standard_normal((T, E)).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, E).astype(np.float32)
    w, ids = gemma4_reference(logits, scale, k)
    with tempfile.TemporaryDirectory() as d:
        def save(name, arr, version=None):
            path = os.path.join(d, name)
            if version is None:
                np.save(path, arr)
            else:
                with open(path, "wb") as f:
                    np.lib.format.write_array(f, arr, version=version)
            return path

        L = save("L.npy", logits)
        S = save("S.npy", scale)
        W = save("W.npy", w.astype(np.float32))
        I = save("I.npy", ids.astype(np.int64))
        base = ["--family", "gemma4", "--k", str(k), "--scale", S]
        expect("float32/int64", 0, base + ["--logits", L, "--weights", W, "--ids", I], f"OK: {T} row(s)")
        for v in [(1, 0), (2, 0), (3, 0)]:
            Lv = save(f"L{v[0]}.npy", logits, version=v)
            expect(f"version {v}", 0, base + ["--logits", Lv, "--weights", W, "--ids", I], f"OK: {T} row(s)")
        F = save("F.npy", np.asfortranarray(logits))
        assert np.load(F).flags.f_contiguous
        expect("fortran order", 0, base + ["--logits", F, "--weights", W, "--ids", I], "OK:")
        B = save("B.npy", logits.astype(">f4"))
        expect("big-endian", 0, base + ["--logits", B, "--weights", W, "--ids", I], "OK:")
        L64 = save("L64.npy", logits.astype(np.float64))
        W64 = save("W64.npy", w)
        I32 = save("I32.npy", ids.astype(np.int32))
        expect("float64/int32", 0, base + ["--logits", L64, "--weights", W64, "--ids", I32], "OK:")

        # float16 logits and bfloat16 logits saved as their raw uint16 bits.
        h = logits.astype(np.float16)
        wh, idh = gemma4_reference(h.astype(np.float32), scale, k)
        H = save("H.npy", h)
        WH = save("WH.npy", wh.astype(np.float32))
        IH = save("IH.npy", idh)
        expect("float16", 0, base + ["--logits", H, "--weights", WH, "--ids", IH], "logits f16", "OK:")
        bits = (logits.view(np.uint32) >> 16).astype(np.uint16)  # truncated to bfloat16
        bvals = (bits.astype(np.uint32) << 16).view(np.float32)
        wb, idb = gemma4_reference(bvals, scale, k)
        BF = save("BF.npy", bits)
        WB = save("WB.npy", wb.astype(np.float32))
        IB = save("IB.npy", idb)
        expect("bf16 without a dtype", 2, base + ["--logits", BF, "--weights", WB, "--ids", IB], "--logits-dtype bf16")
        expect("bf16", 0, base + ["--logits", BF, "--weights", WB, "--ids", IB, "--logits-dtype", "bf16"], "logits bf16", "OK:")

        # A wrong router: per_expert_scale by slot instead of by expert, in rows 7 and 250 only.
        wrong = w.copy()
        for t in (7, 250):
            wrong[t] = wrong[t] / scale[ids[t]] * scale[:k]
        WW = save("WW.npy", wrong.astype(np.float32))
        expect("wrong router", 1, base + ["--logits", L, "--weights", WW, "--ids", I],
               f"FAIL: 2 of {T} row(s)", "\n  row 7 slot ", "\n  row 250 slot ")

        # Malformed files written from NumPy's bytes.
        raw = open(L, "rb").read()
        for name, data, needle in [
            ("truncated", raw[:-7], "data: truncated"),
            ("bad magic", b"\x93NUMPX" + raw[6:], "magic"),
            ("header garbage", raw[:10] + b"[" + raw[11:], "header"),
        ]:
            p = os.path.join(d, "bad.npy")
            open(p, "wb").write(data)
            expect(name, 2, base + ["--logits", p, "--weights", W, "--ids", I], "bad.npy: " + needle)
        wrong_shape = save("WS.npy", w.astype(np.float32).reshape(T * k))
        expect("wrong shape", 2, base + ["--logits", L, "--weights", wrong_shape, "--ids", I], "WS.npy: shape")
    if failures:
        print("\n\n".join(failures))
        return 1
    print("ok")
    return 0


sys.exit(main())
