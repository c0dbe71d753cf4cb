"""Regenerate the config.json corpus in this folder (not run by the tests; needs `pip install transformers`).

Each file is what `PretrainedConfig.save_pretrained` writes (transformers 5.23) for the config
class of one architecture family, with the published model's sizes passed where the class
defaults are a toy (the model named beside each entry). Two legacy-format files are written by
hand in the layout transformers 4.x saved (nemotron_h_legacy.json with hybrid_override_pattern,
nemotron_nas.json with DeciLM's block_configs, a remote-code model with no transformers class).
Written by hand with the published configs' field names and our own sizes (issue 20): hunyuan_moe,
qwen3_next_interval, step3_text, falcon_h1, olmo3, olmoe, internlm2, lfm2 and gemma3n.json.
The tests derive every expected call and byte count by hand from these fields and vLLM's code.
"""

from pathlib import Path

import transformers as t

HERE = Path(__file__).parent
FILES = {
    # Jamba-v0.1: the class defaults are the published model
    "jamba.json": (t.JambaConfig, {}),
    # Qwen3-Next-80B-A3B: the class defaults (3 Gated DeltaNet layers, then full attention)
    "qwen3_next.json": (t.Qwen3NextConfig, {}),
    # Nemotron-H-8B-Base-8K sizes in the transformers 5 layout (layers_block_type)
    "nemotron_h.json": (t.NemotronHConfig, {"hybrid_override_pattern": "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-",
                                            "n_routed_experts": 0}),
    # granite-4.0-h-tiny-like: Mamba-2 with one group, MoE FFN in every layer
    "granitemoehybrid.json": (t.GraniteMoeHybridConfig, {
        "hidden_size": 1536, "num_hidden_layers": 8, "num_attention_heads": 12, "num_key_value_heads": 4,
        "vocab_size": 100352, "num_local_experts": 64, "num_experts_per_tok": 6, "intermediate_size": 512,
        "mamba_n_groups": 1, "mamba_n_heads": 48, "mamba_d_head": 64,
        "layer_types": ["mamba", "mamba", "mamba", "attention", "mamba", "mamba", "mamba", "attention"]}),
    # c4ai-command-r-v01: the class defaults
    "cohere.json": (t.CohereConfig, {}),
    # falcon-40b: new decoder architecture (parallel attention and MLP), 8 KV heads
    "falcon.json": (t.FalconConfig, {"hidden_size": 8192, "num_hidden_layers": 60, "num_attention_heads": 128,
                                     "num_kv_heads": 8, "new_decoder_architecture": True, "parallel_attn": True}),
    # MiniMax-M2: the class defaults
    "minimax_m2.json": (t.MiniMaxM2Config, {}),
    # LongCat-Flash: the class defaults
    "longcat_flash.json": (t.LongcatFlashConfig, {}),
    # GPT-2 (124M): the class defaults; no dtype, no intermediate size
    "gpt2.json": (t.GPT2Config, {}),
    # Gemma 4 (the class defaults: per-layer inputs of 256 per layer, no experts), multimodal wrapper
    "gemma4.json": (t.Gemma4Config, {}),
    # a Gemma 4 MoE text model: experts beside the dense MLP in every layer (top_k_experts, as the
    # published MoE checkpoints name it), no per-layer inputs
    "gemma4_moe.json": (t.Gemma4TextConfig, {"hidden_size": 2816, "num_hidden_layers": 30, "num_attention_heads": 16,
                                             "num_key_value_heads": 8, "intermediate_size": 2112, "num_experts": 128,
                                             "top_k_experts": 8, "moe_intermediate_size": 704,
                                             "hidden_size_per_layer_input": 0}),
    # Zamba2-2.7B: the class defaults (its 'hybrid' layers are not modelled: the test expects an error)
    "zamba2.json": (t.Zamba2Config, {}),
}

if __name__ == "__main__":
    for name, (cls, kwargs) in FILES.items():
        (HERE / name).write_text(cls(**kwargs).to_json_string(use_diff=False))
        print("wrote", name)
