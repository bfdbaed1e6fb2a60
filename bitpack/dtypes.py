"""Float storage dtypes, in one place: the names every container and model uses for stored
float tensors, their NumPy views, and exact bfloat16 handling.

NumPy has no bfloat16: BF16 is viewed as its uint16 bit patterns and widened exactly
(f32 bits = u16 << 16); narrowing refuses any value that would need rounding.
"""

from __future__ import annotations

import numpy as np

from .errors import ContainerError

# Stored float dtype name (safetensors' and GGUF's spelling) -> NumPy dtype of the raw view.
FLOAT_STORAGE: dict[str, np.dtype] = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}


def f32_from_bf16(bits: np.ndarray) -> np.ndarray:
    """Widen bf16 bit patterns (uint16) to float32, exactly: bf16 is the top half of a float32."""
    bits = np.asarray(bits)
    if bits.dtype.kind != "u" or bits.dtype.itemsize != 2:
        raise ContainerError(f"bf16 bits must be uint16, got {bits.dtype}")
    out = np.empty(bits.shape, np.uint32)  # one allocation, no uint32 temporary of the input
    np.left_shift(bits, 16, out=out, dtype=np.uint32)
    return out.view(np.float32)


def bf16_bits(values: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) of float32 values that are exactly bf16-representable.

    Refuses any value whose low 16 bits are set (it would need rounding, including NaNs
    with a low payload): nothing is silently changed.
    """
    values = np.asarray(values)
    if values.dtype.kind != "f" or values.dtype.itemsize != 4:
        raise ContainerError(f"bf16_bits needs float32 input, got {values.dtype}")
    u32 = np.ascontiguousarray(values, dtype="<f4").view("<u4")
    low = u32 & 0xFFFF
    if low.any():
        i = int(np.flatnonzero(low.reshape(-1))[0])
        raise ContainerError(f"value {values.reshape(-1)[i]!r} at flat index {i} is not "
                             "exactly representable in bf16 (refusing to round)")
    return (u32 >> 16).astype("<u2")
