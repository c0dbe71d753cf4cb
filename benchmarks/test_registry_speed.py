"""The engine-registry check costs a trace next to nothing, and a checked trace stays under 10 ms (issue 20).

Timings take the best round: the machine running the suite is shared, so the median follows the load
(both are kept in extra_info).
"""

import json
import time

import pytest

from commbench.traffic import registry
from commbench.traffic.model_card import card_from_config, load_model_card, shipped_models
from commbench.traffic.plan import ParallelPlan
from commbench.traffic.trace import make_trace
from commbench.traffic.workload import Workload, _build_schedule

LIMIT_S = 0.010  # a whole trace, registry check included
CHECK_LIMIT_S = 50e-6  # one registry check once the registry is loaded

# a decoder of our own sizes that only the current generation's registry names: the trace switches engine
SWITCHED = {"architectures": ["Qwen3_5MoeForConditionalGeneration"], "model_type": "llama", "hidden_size": 2048,
            "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 4,
            "intermediate_size": 5632, "vocab_size": 64000, "torch_dtype": "bfloat16"}


def _needs_timing(benchmark):
    if benchmark.stats is None:  # the project's addopts disable benchmarks: the run above checked the result only
        pytest.skip("timing needs --benchmark-enable")


def test_registry_load_under_10ms():
    """Once per process; CPU time (process_time), which the shared machine's load does not inflate."""
    best = float("inf")
    for _ in range(5):
        registry.engine_registry.cache_clear()
        start = time.process_time()
        registry.engine_registry()
        best = min(best, time.process_time() - start)
    assert best < LIMIT_S, f"engine_registry.toml loads in {best * 1e3:.1f} ms of CPU"


@pytest.mark.parametrize("archs", [("GptOssForCausalLM",), ("Qwen3_5MoeForConditionalGeneration",),
                                   ("Olmo3ForCausalLM",)])
def test_registry_check_is_cheap(benchmark, archs):
    registry.engine_registry()

    def run():
        registry.resolve.cache_clear()  # the cold lookup, as a new model's first trace pays it
        return registry.choose_engine(archs, "vllm-v1", explicit=False)

    engine, _ = benchmark(run)
    assert engine in ("vllm-v1", "vllm-v2")
    _needs_timing(benchmark)
    assert benchmark.stats.stats.min < CHECK_LIMIT_S


@pytest.mark.parametrize("mode", ["tp", "pp"])
@pytest.mark.parametrize("model", [*shipped_models(), "switched"])
def test_checked_trace_under_10ms(benchmark, model, mode):
    card = card_from_config(json.loads(json.dumps(SWITCHED)), "switched") if model == "switched" else load_model_card(model)

    def run():
        _build_schedule.cache_clear()
        registry.resolve.cache_clear()
        trace = make_trace(ParallelPlan.for_mode(card, mode), Workload.from_options(128, "balanced"))
        return trace, trace.run_totals

    trace, totals = benchmark(run)
    assert totals["calls"] > 0 and trace.to_dict()["served_by"]
    _needs_timing(benchmark)
    benchmark.extra_info["median_ms"] = benchmark.stats.stats.median * 1e3
    assert benchmark.stats.stats.min < LIMIT_S, f"{model} {mode}: {benchmark.stats.stats.min * 1e3:.1f} ms"
