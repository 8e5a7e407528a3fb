"""Triton's tensor dtypes and their numpy and tritonclient names: one table for the contracts, the
adapters, the benchmarks and the client (which reads `TYPE_*` from the server's configs)."""

from __future__ import annotations

# Triton's config dtype without its TYPE_ prefix -> numpy's dtype name.
NUMPY_NAMES = {"STRING": "object", "BOOL": "bool", "UINT8": "uint8", "INT32": "int32", "INT64": "int64",
               "FP16": "float16", "FP32": "float32"}
_BY_NUMPY_NAME = {numpy: triton for triton, numpy in NUMPY_NAMES.items()}


def numpy_type(dtype: str):
    """np.object_, np.int32, ... for a Triton dtype (STRING, INT32; a config's TYPE_INT32 too)."""
    import numpy as np

    return np.dtype(NUMPY_NAMES[dtype.removeprefix("TYPE_")]).type


def wire_dtype(dtype: str) -> str:
    """tritonclient's name for a Triton dtype: the same, but STRING travels as BYTES."""
    dtype = dtype.removeprefix("TYPE_")
    return "BYTES" if dtype == "STRING" else dtype


def triton_dtype_of(numpy_dtype) -> str:
    """The Triton dtype of a numpy array's dtype; one Triton cannot carry is named."""
    import numpy as np

    name = np.dtype(numpy_dtype).name
    if name not in _BY_NUMPY_NAME:
        raise TypeError(f"numpy dtype {name} has no Triton tensor type (use one of {', '.join(_BY_NUMPY_NAME)})")
    return _BY_NUMPY_NAME[name]
