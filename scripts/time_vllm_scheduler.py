"""Time vLLM's V1 scheduler per decode step at 1-256 running requests, on the CPU (no GPU needed).

The host work of an engine step that the GPU waits on without async scheduling (commbench.predict.
recipes.VLLM_HOST_PER_REQUEST_S) is in part vLLM's Scheduler.schedule() + update_from_output().
This runs the real scheduler of an installed vLLM (0.11.0 was used: `pip install --no-deps` of its
wheel beside torch's CPU build and its pure-Python requirements) on a tiny local config with no
tokenizer, feeds it one sampled token per request per step, and prints the median and minimum
step time per request count as CSV (requests, step_us_median, step_us_min).

    PYTHONHASHSEED=0 python scripts/time_vllm_scheduler.py > reports/vllm-host/scheduler-cpu.csv
"""

import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

import torch  # noqa: E402
from vllm.config import CacheConfig, DeviceConfig, ModelConfig, SchedulerConfig, VllmConfig  # noqa: E402
from vllm.sampling_params import SamplingParams  # noqa: E402
from vllm.utils import get_hash_fn_by_name  # noqa: E402
from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash  # noqa: E402
from vllm.v1.core.sched.scheduler import Scheduler  # noqa: E402
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec  # noqa: E402
from vllm.v1.outputs import ModelRunnerOutput  # noqa: E402
from vllm.v1.request import Request  # noqa: E402
from vllm.v1.structured_output import StructuredOutputManager  # noqa: E402

BLOCK = 16
TINY_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
               "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2,
               "num_hidden_layers": 2, "vocab_size": 32000, "max_position_embeddings": 8192,
               "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2}


def make_scheduler(model_dir: str, max_seqs: int, blocks: int = 200_000) -> Scheduler:
    sched = SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=8192, max_model_len=8192,
                            enable_chunked_prefill=True)
    model = ModelConfig(model=model_dir, dtype="bfloat16", seed=0, skip_tokenizer_init=True, max_model_len=8192)
    cache = CacheConfig(block_size=BLOCK, gpu_memory_utilization=0.9, swap_space=0, cache_dtype="auto",
                        enable_prefix_caching=True)
    config = VllmConfig(scheduler_config=sched, model_config=model, cache_config=cache,
                        device_config=DeviceConfig(device="cpu"))
    kv = KVCacheConfig(num_blocks=blocks, kv_cache_tensors=[], kv_cache_groups=[
        KVCacheGroupSpec(["layer"], FullAttentionSpec(BLOCK, 1, 1, torch.float32, False))])
    cache.num_gpu_blocks = blocks
    return Scheduler(vllm_config=config, kv_cache_config=kv, log_stats=True,
                     structured_output_manager=StructuredOutputManager(config))


def time_steps(model_dir: str, n: int, isl: int = 64, steps: int = 60) -> tuple[float, float]:
    """(median, min) seconds of schedule() + update_from_output() over `steps` decode steps of n requests."""
    s = make_scheduler(model_dir, n)
    hash_fn = get_hash_fn_by_name(s.vllm_config.cache_config.prefix_caching_hash_algo)
    init_none_hash(hash_fn)
    hasher = get_request_block_hasher(BLOCK, hash_fn)
    for i in range(n):
        s.add_request(Request(request_id=str(i), prompt_token_ids=[(7 * i + j) % 31000 + 3 for j in range(isl)],
                              sampling_params=SamplingParams(max_tokens=10_000, ignore_eos=True),
                              pooling_params=None, eos_token_id=2, block_hasher=hasher))
    times = []
    for step in range(steps + 3):  # the first steps prefill; the rest decode n requests each
        t0 = time.perf_counter()
        out = s.schedule()
        ids = [r.req_id for r in out.scheduled_new_reqs] + list(out.scheduled_cached_reqs.req_ids)
        s.update_from_output(out, ModelRunnerOutput(req_ids=ids, req_id_to_index={r: k for k, r in enumerate(ids)},
                                                    sampled_token_ids=[[5] for _ in ids], logprobs=None,
                                                    prompt_logprobs_dict={}, pooler_output=[]))
        if step >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main(counts: list[int]) -> None:
    with tempfile.TemporaryDirectory() as model_dir:
        with open(os.path.join(model_dir, "config.json"), "w") as f:
            json.dump(TINY_CONFIG, f)
        print("requests,step_us_median,step_us_min")
        for n in counts:
            med, low = time_steps(model_dir, n)
            print(f"{n},{med * 1e6:.1f},{low * 1e6:.1f}", flush=True)


if __name__ == "__main__":
    main([int(x) for x in sys.argv[1:]] or [1, 2, 4, 8, 16, 32, 64, 128, 256])
