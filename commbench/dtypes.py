"""Bytes per element of every datatype commbench names, in one table.

Users of a subset name the subset and read the sizes here: the sweep's -d types
(commbench.measure.backends.DTYPE_BYTES), the activation / KV-cache dtypes a model card may name
(commbench.traffic.weight_formats.DTYPE_BYTES), the fixed dtypes of trace sites (metadata int64/int32,
uint8 pickles, float32 norms).
"""

ELEMENT_BYTES = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "int32": 4, "int8": 1, "uint8": 1,
    "fp8": 1, "float8_e4m3fn": 1, "fp8_e4m3": 1, "fp8_e5m2": 1,
    # llama.cpp's block formats: 32 values share an fp16 scale (8-bit: 32 + 2 = 34 B, 4-bit: 16 + 2 = 18 B)
    "q8_0": 34 / 32, "q4_0": 18 / 32,
}
"""Bytes per element (a fractional size for block formats), by the name commbench uses."""


def sizes_of(*names: str) -> dict[str, float]:
    """The sizes of `names`, in that order: a subset's own table, with sizes from ELEMENT_BYTES."""
    return {name: ELEMENT_BYTES[name] for name in names}
