"""Tensors <-> the C++ core's byte buffers (no per-element Python work anywhere here)."""

from __future__ import annotations

import torch

#: DType codes of reference/routing.hpp (f32 = 0, f16 = 1, bf16 = 2) and their torch dtypes.
DTYPE_BY_CODE = (torch.float32, torch.float16, torch.bfloat16)
DTYPE_BY_NAME = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
NAME_BY_DTYPE = {v: k for k, v in DTYPE_BY_NAME.items()}
#: Family codes of reference/routing.hpp.
FAMILIES = ("gemma4", "softmax_topk", "softmax_topk_raw", "sigmoid_grouped", "sigmoid_top1")
#: Families a fn(gating, k, scale) can express (sigmoid_grouped also needs a bias and groups).
CALLABLE_FAMILIES = ("gemma4", "softmax_topk", "softmax_topk_raw", "sigmoid_top1")


def from_bytes(buf, dtype: torch.dtype) -> torch.Tensor:
    """A 1-D CPU tensor viewing `buf` (a writable buffer such as a bytearray)."""
    if len(buf) == 0:
        return torch.empty(0, dtype=dtype)
    if dtype == torch.bfloat16:
        # bf16 travels as 16-bit words and is reinterpreted, never converted.
        return torch.frombuffer(buf, dtype=torch.int16).view(torch.bfloat16)
    return torch.frombuffer(buf, dtype=dtype)


def gating_view(storage, dtype: torch.dtype, T: int, E: int, row_stride: int, col_stride: int,
                device: torch.device) -> torch.Tensor:
    """The [T, E] gating view the C++ layout describes, on `device`: the storage is copied to the
    device as it is (gaps and all) and viewed with the same strides (as_strided), so padded,
    transposed and strided layouts reach fn exactly as they are in memory."""
    base = from_bytes(storage, dtype)
    if device.type != "cpu":
        base = base.to(device)
    return base.as_strided((T, E), (row_stride, col_stride), 0)


def case_inputs(case: dict, device="cpu"):
    """(gating, k, scale) of a case dict returned by the core (Failure.case, replay results), on
    `device`, laid out exactly as a campaign passes them to fn."""
    device = torch.device(device)
    dtype = DTYPE_BY_NAME[case["dtype"]]
    g = gating_view(bytearray(case["storage"]), dtype, case["T"], case["E"], case["row_stride"],
                    case["col_stride"], device)
    scale = None
    if case["family"] == "gemma4":
        if case["scale"] is None:
            scale = torch.ones(case["E"], dtype=torch.float32, device=device)
        else:
            scale = from_bytes(bytearray(case["scale"]), torch.float32).to(device)
    return g, case["k"], scale


def logical_logits(case: dict) -> torch.Tensor:
    """The case's logits as a contiguous [T, E] tensor of its dtype on the CPU."""
    v = from_bytes(bytearray(case["logits"]), torch.float32).reshape(case["T"], case["E"])
    return v.to(DTYPE_BY_NAME[case["dtype"]])


def as_f32_cpu(t: torch.Tensor) -> torch.Tensor:
    """Contiguous float32 CPU copy (values of f16/bf16 tensors convert exactly)."""
    return t.detach().to("cpu", torch.float32).contiguous()
