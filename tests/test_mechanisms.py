"""Issue 22: the host-staged fabric, engine scheduling, the mechanisms, what-ifs and the crossover.

Every expected value is worked by hand from the sources named in the product (fabric points, vLLM
code), not read back from the code under test.
"""

import dataclasses

import pytest

from commbench import CommbenchError
from commbench.fabric import load_fabric
from commbench.predict.hardware import load_hardware
from commbench.predict.mechanisms import (BASELINE, add_per_call, apply_what_ifs, cap_busbw, crossover,
                                          crossover_table, parse_what_ifs)
from commbench.predict.recipes import Engine, load_recipe
from commbench.predict.step_cost import decode_step, stage_cost
from commbench.traffic.model_card import load_model_card
from commbench.traffic.plan import ParallelPlan

DECODE_S = 128 * 2880 * 2  # gpt-oss-120b TP decode all-reduce at batch 128: [128, 2880] bf16
CALLS = 2 * 36 + 1  # two all-reduces per layer (attention out, MoE out) and the embedding's


@pytest.fixture(scope="module")
def spark():
    return load_hardware("dgx-spark")


@pytest.fixture(scope="module")
def tp_plan():
    return ParallelPlan.for_mode(load_model_card("gpt-oss-120b"), "tp")


def _us(alpha_us, busbw_gbps, size):
    return alpha_us + size / (busbw_gbps * 1e3)  # all_reduce at n = 2: busbw factor 1


# ---- the host-staged fabric ---------------------------------------------------------------

def test_hoststaged_mid_segment_is_the_4_spark_points_by_ring_steps():
    """786,432 B 656 us and 1,572,864 B 877 us on 4 ranks: slope 221 us / 786,432 B, intercept 435 us;
    busbw = algbw x 2(4-1)/4; 2-rank alpha = 435 x 2 / 6 (ring steps 2(n-1))."""
    fab = load_fabric("spark-hoststaged")
    mid = fab.segments[1]
    algbw = 786432 / 221e-6
    assert mid.busbw_Bps == pytest.approx(algbw * 1.5, rel=1e-3)
    assert mid.alpha_s == pytest.approx((656e-6 - 786432 / algbw) * 2 / 6, rel=1e-3)
    # the small-message line ends where the mid line becomes faster; t is continuous there and at 1.5 MiB
    edge = fab.segments[0].up_to_bytes
    assert _us(24.5, 1.61, edge) == pytest.approx(_us(145.0, 5.338, edge), rel=1e-3)
    assert fab.time_s("all_reduce", 1572864, 2) == pytest.approx(fab.time_s("all_reduce", 1572865, 2), rel=1e-3)
    # the 2-Spark small points are kept as measured
    assert fab.time_s("all_reduce", 65536, 2) * 1e6 == pytest.approx(65.2, abs=0.1)


def test_hoststaged_is_the_spark_default_and_200gbe_is_compared(spark):
    assert spark.fabric == "spark-hoststaged" and "spark-200gbe" in spark.compare_fabrics


# ---- each mechanism on and off, by hand ---------------------------------------------------

def _decode(plan, hw, fabric, engine, batch=128, context=1536):
    return decode_step(plan, hw, fabric, batch, context, engine)


@pytest.mark.parametrize("name", ["spark-hoststaged", "spark-tcp-200g", "spark-1hca", "spark-degraded"])
def test_a_slower_transport_slows_tp_by_its_calls_times_the_per_call_difference(name, spark, tp_plan):
    """TP decode step difference = 73 x (t_f(S) - t_200(S)) at S = 737,280 B, plus the logits all-gather's
    ([128, 201,088] bf16 = 51.5 MB, busbw factor 1/2); nothing else in the step moves."""
    good, bad = load_fabric("spark-200gbe"), load_fabric(name)
    engine = Engine("vllm", True)
    delta = _decode(tp_plan, spark, bad, engine)["wall_s"] - _decode(tp_plan, spark, good, engine)["wall_s"]
    per_call = bad.time_s("all_reduce", DECODE_S, 2) - good.time_s("all_reduce", DECODE_S, 2)
    gather = 128 * 201088 * 2
    per_gather = bad.time_s("all_gather", gather, 2) - good.time_s("all_gather", gather, 2)
    assert per_call > 0 and per_gather >= 0
    assert delta == pytest.approx(CALLS * per_call + per_gather, rel=1e-6)


def test_hoststaged_by_hand(spark, tp_plan):
    """283.1 us (145 + 737,280 B / 5.338 GB/s) against 98.4 us (64.9 + 737,280 / 22): 13.5 ms per step."""
    per_call_us = _us(145.0, 5.338, DECODE_S) - _us(64.9, 22, DECODE_S)
    assert per_call_us == pytest.approx(184.7, abs=0.1)
    engine = Engine("vllm", True)
    delta = (_decode(tp_plan, spark, load_fabric("spark-hoststaged"), engine)["wall_s"]
             - _decode(tp_plan, spark, load_fabric("spark-200gbe"), engine)["wall_s"])
    assert delta * 1e3 == pytest.approx(CALLS * per_call_us / 1e3, rel=0.05)


def test_ray_without_async_adds_the_host_work_to_every_tp_step(spark, tp_plan):
    """2 ms + 128 requests x 7.4 us = 2.947 ms, serial on Ray; hidden under the GPU with mp + async."""
    fab = load_fabric("spark-200gbe")
    ray = _decode(tp_plan, spark, fab, Engine("vllm", True, executor="ray", async_scheduling=False))
    mp_async = _decode(tp_plan, spark, fab, Engine("vllm", True, executor="mp", async_scheduling=True))
    assert ray["wall_s"] - mp_async["wall_s"] == pytest.approx(2e-3 + 128 * 7.4e-6, rel=1e-9)
    assert mp_async["overhead_s"] == 0.0
    # Ray with async asked for: vLLM disables it, so the same as without
    ray_async = _decode(tp_plan, spark, fab, Engine("vllm", True, executor="ray", async_scheduling=True))
    assert ray_async["wall_s"] == pytest.approx(ray["wall_s"], rel=1e-12)


def test_pp_keeps_its_host_work_overlapped_whatever_the_executor(spark):
    plan = ParallelPlan.for_mode(load_model_card("gpt-oss-120b"), "pp")
    fab = load_fabric("spark-200gbe")
    ray = _decode(plan, spark, fab, Engine("vllm", True, executor="ray"))
    mp_async = _decode(plan, spark, fab, Engine("vllm", True, executor="mp", async_scheduling=True))
    assert ray["wall_s"] == pytest.approx(mp_async["wall_s"], rel=1e-12)


def test_eager_adds_36_layers_x_14_kernels_x_7_us_to_a_tp_step(spark, tp_plan):
    fab = load_fabric("spark-200gbe")
    graphs = _decode(tp_plan, spark, fab, Engine("vllm", True))["wall_s"]
    eager = _decode(tp_plan, spark, fab, Engine("vllm", False))["wall_s"]
    assert eager - graphs == pytest.approx(36 * 14 * 7e-6, rel=1e-9)


def test_marlin_pads_the_expert_bytes_as_mxfp4_py_does(spark):
    """Marlin: I/tp up to 128, H up to 256. gpt-oss I = H = 2880: TP=2 1536/1440 x 3072/2880,
    TP=1 2944/2880 x 3072/2880. A dense model has no experts to pad."""
    card = load_model_card("gpt-oss-120b")
    for tp, expected in ((2, 1536 / 1440 * 3072 / 2880), (1, 2944 / 2880 * 3072 / 2880)):
        plan = ParallelPlan(card, tp=tp, pp=1)
        triton, marlin = stage_cost(plan, 0, spark, "triton"), stage_cost(plan, 0, spark, "marlin")
        assert marlin.expert_bytes_all / triton.expert_bytes_all == pytest.approx(expected, rel=1e-12)
        assert marlin.fixed_weight_bytes == triton.fixed_weight_bytes
    llama = ParallelPlan(load_model_card("llama-3.1-8b-instruct"), tp=2, pp=1)
    assert stage_cost(llama, 0, spark, "marlin") == stage_cost(llama, 0, spark, "triton")


# ---- what-ifs ------------------------------------------------------------------------------

def test_what_ifs_parse_and_apply():
    what = parse_what_ifs(["fabric=spark-1hca", "executor=ray", "cuda_graphs=false", "moe_kernel=marlin",
                           "async_scheduling=true", "allreduce_extra_us=50"])
    engine, fab = apply_what_ifs(Engine(), load_fabric("spark-200gbe"), what)
    assert (engine.executor, engine.cuda_graphs, engine.moe_kernel, engine.async_scheduling) == ("ray", False, "marlin", True)
    assert not engine.overlaps_host  # Ray: async scheduling disabled
    assert fab.segments[0].alpha_s == pytest.approx(24.5e-6 + 50e-6)


@pytest.mark.parametrize("bad", ["fabric", "speed=3", "executor=slurm", "cuda_graphs=maybe", "moe_kernel=cutlass",
                                 "allreduce_extra_us=-1", "fabric=nope"])
def test_bad_what_if_is_one_line(bad):
    with pytest.raises(CommbenchError) as err:
        parse_what_ifs([bad])
    msg = str(err.value)
    assert "\n" not in msg and any(k in msg.lower() for k in ("valid", "expected", ">= 0")), msg


def test_predict_what_if_on_the_command_line(cli):
    base = cli("predict", "gpt-oss-120b", "--batch", "128", "--mode", "tp", "--fabric", "spark-200gbe", "--json")
    tcp = cli("predict", "gpt-oss-120b", "--batch", "128", "--mode", "tp", "--fabric", "spark-200gbe",
              "--what-if", "fabric=spark-tcp-200g", "--json")
    import json

    a, b = (json.loads(r.output)["rows"][0] for r in (base, tcp))
    assert b["fabric"] == "spark-tcp-200g" and b["output_tok_s"] < a["output_tok_s"]
    bad = cli("predict", "gpt-oss-120b", "--what-if", "executor=slurm")
    assert bad.exit_code == 2 and "valid: mp, ray" in bad.output


# ---- the crossover --------------------------------------------------------------------------

def test_crossover_of_a_two_term_toy_model_is_b_minus_a_over_n():
    """TP step a + N c against PP step b: PP wins once c > (b - a) / N."""
    a, n, b, batch = 0.100, 73, 0.150, 128
    c = crossover(lambda x: batch / (a + n * x) - batch / b, 0.0, 0.1, tol=1e-9)
    assert c == pytest.approx((b - a) / n, rel=1e-6)
    assert crossover(lambda x: -1.0, 0.0, 1.0) == 0.0  # already crossed
    assert crossover(lambda x: 1.0, 0.0, 1.0) is None  # never


def test_crossover_on_the_serving_model_matches_a_linear_hand_solution(spark):
    """Run times grow linearly with the per-call cost d (TP: calls x d; PP: sends x d): from the runs at
    d = 0 and d = 1 ms, solve B/W_tp(d) = B/W_pp(d) by hand and compare with the bisection."""
    from commbench.predict.serving import predict_row
    from commbench.traffic.workload import Workload

    fab = load_fabric("spark-200gbe")
    x = crossover_table("gpt-oss-120b", spark, fab, 128)
    card = load_model_card("gpt-oss-120b")
    w = Workload.from_options(128, "balanced")
    eng = load_recipe("checkpoint").engine
    walls = {}
    for mode in ("tp", "pp"):
        plan = ParallelPlan.for_mode(card, mode)
        w0, w1 = (predict_row(plan, w, spark, add_per_call(fab, d), eng)["run_s"] for d in (0.0, 1e-3))
        walls[mode] = (w0, (w1 - w0) / 1e-3)
    (t0, kt), (p0, kp) = walls["tp"], walls["pp"]
    d_hand = (p0 - t0) / (kt - kp)
    assert x["extra_us"] == pytest.approx(d_hand * 1e6, rel=0.02)
    assert x["msg_bytes"] == DECODE_S
    assert x["crossover_call_us"] == pytest.approx(x["call_us"] + x["extra_us"])
    # at the crossover busbw cap, TP and PP meet
    capped = cap_busbw(fab, x["crossover_busbw_gbps"] * 1e9)
    tp, pp = (predict_row(ParallelPlan.for_mode(card, m), w, spark, capped, eng)["output_tok_s"] for m in ("tp", "pp"))
    assert tp == pytest.approx(pp, rel=0.01)


# ---- explain ----------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["gpt-oss-120b", "llama-3.1-8b-instruct"])
def test_explain_shows_curves_mechanisms_and_crossover(cli, model):
    result = cli("explain", model, "--batch", "128")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Mechanisms switched on alone" in out and "Crossover" in out
    for label in ("host-staged mid-size NCCL", "Ray without async scheduling", "NCCL over TCP sockets", "one HCA",
                  "degraded link start", "Marlin MoE padding", "eager instead of CUDA graphs"):
        assert label in out
    if model == "gpt-oss-120b":
        assert "kubis.ai TP=2" in out and "StorageReview" in out and "% of the published gap" in out
    else:
        assert "No published figures are shipped for this model" in out


def test_baseline_is_well_configured():
    assert BASELINE["fabric"] == "spark-200gbe" and BASELINE["async_scheduling"] and BASELINE["cuda_graphs"]
    eng, _ = apply_what_ifs(Engine(), load_fabric("spark-200gbe"), BASELINE)
    assert eng.overlaps_host and dataclasses.replace(eng, executor="ray").overlaps_host is False


def test_accuracy_names_the_metric_per_row_and_sets_the_peak_beside_the_mean():
    """The review names no metric: mean (output_throughput) and the 1-s peak are both set beside it.
    A run's mean includes its prefill steps and ramp, so the busiest second is at least the mean;
    the peak counts whole tokens in one second."""
    from commbench.predict.accuracy import accuracy_table
    from commbench.predict.published import shipped_figures

    figs = shipped_figures()
    table = accuracy_table(figs[figs.source.isin(["StorageReview", "kubis.ai TP=2"])], load_fabric("spark-hoststaged"))
    review = table[table.source == "StorageReview"]
    assert (review.predicted_peak >= review.predicted).all()
    assert (review.predicted_peak % 1 == 0).all() and review.compared_as.str.contains("1-s peak").all()
    tp2 = table[table.source == "kubis.ai TP=2"]
    assert tp2.predicted_peak.isna().all() and tp2.compared_as.str.startswith("steady decode").all()
    assert (tp2.tuned == "").all()  # the independent TP=2 curve is a check, never tuned on


@pytest.mark.parametrize("field,value,valid", [("executor", '"slurm"', "mp, ray"), ("async_scheduling", '"yes"', "true or false"),
                                               ("moe_kernel", '"cutlass"', "marlin")])
def test_a_recipe_with_a_bad_engine_field_is_refused_in_one_line(tmp_path, field, value, valid):
    path = tmp_path / "r.toml"
    path.write_text(f'name = "r"\nengine = "vllm"\n{field} = {value}\n')
    with pytest.raises(CommbenchError) as err:
        load_recipe(str(path))
    assert "\n" not in str(err.value) and field in str(err.value) and valid in str(err.value)


def test_shipped_recipes_say_how_the_engine_schedules():
    """kubis.ai's TP=2 pair ran on Ray (no async scheduling); the default recipe is vLLM 0.11.0's defaults."""
    kubis, default = load_recipe("vllm-mxfp4-eager").engine, load_recipe("checkpoint").engine
    assert (kubis.executor, kubis.async_scheduling, kubis.cuda_graphs) == ("ray", False, False)
    assert (default.executor, default.async_scheduling, default.moe_kernel) == ("mp", False, "triton")
    assert not kubis.overlaps_host and not default.overlaps_host
