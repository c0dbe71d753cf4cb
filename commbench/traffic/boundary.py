"""What a pipeline stage boundary carries: the shape of each IntermediateTensors entry
(BOUNDARY_SHAPES) and the size of the pickled metadata list vLLM sends before the tensors."""

from __future__ import annotations

#: The shape of each tensor a stage boundary may carry (IntermediateTensors), in commbench.traffic.trace._dims' names.
BOUNDARY_SHAPES = {"hidden_states": ("tokens", "hidden"), "residual": ("tokens", "hidden"),
                   # vllm/model_executor/models/gemma4.py make_empty_intermediate_tensors
                   "per_layer_inputs": ("tokens", "num_layers", "per_layer_input")}


def _int_pickle_bytes(value: int) -> int:
    """Bytes pickle protocol 4 spends on a non-negative int: BININT1, BININT2 or BININT."""
    return 2 if value < 256 else 3 if value < 65536 else 5


def metadata_pickle_bytes(tensors: tuple, dtype: str, none_keys: tuple = ()) -> int:
    """Size of pickle.dumps(metadata_list) that send_tensor_dict sends before the tensors:
    [(key, TensorMetadata("cuda", torch.<dtype>, torch.Size(shape))), ...], protocol 4, for
    `tensors` = ((key, shape), ...):

        96 + len(dtype name) + sum over tensors of (24 + len(key) + sum of each dim's int opcode)

    The first entry carries the globals (TensorMetadata, torch.<dtype>, torch.Size) and later
    ones refer back to them; a shape's tuple is one opcode whatever its length (TUPLE1-3). An
    entry whose value is None (`none_keys`, after the tensors) adds 7 + len(key).
    tests/test_trace_architectures.py checks this against pickle with torch.
    """
    return 96 + len(dtype) + sum(24 + len(key) + sum(_int_pickle_bytes(int(d)) for d in shape) for key, shape in tensors) \
        + sum(7 + len(key) for key in none_keys)
