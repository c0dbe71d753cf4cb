"""A trace of any shipped model at any batch must take well under 50 ms (issue 2)."""

import pytest

from commbench.traffic.model_card import load_model_card
from commbench.traffic.plan import ParallelPlan
from commbench.traffic.trace import make_trace
from commbench.traffic.workload import Workload, _build_schedule


@pytest.mark.parametrize("model", ["gpt-oss-120b", "qwen3-coder-30b-a3b"])
@pytest.mark.parametrize("mode", ["tp", "pp"])
def test_trace_speed(benchmark, model, mode):
    card = load_model_card(model)

    def run():
        _build_schedule.cache_clear()  # measure the cold path, schedule included
        trace = make_trace(ParallelPlan.for_mode(card, mode), Workload.from_options(128, "decode-heavy"))
        return trace.totals_frame()

    frame = benchmark(run)
    assert len(frame) == 4
