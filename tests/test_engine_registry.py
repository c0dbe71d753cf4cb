"""Engine generations' model registries (issue 20): which `architectures` each can serve, and what a
trace does with a model the chosen generation cannot serve.

The expected names and modules were read by hand from vLLM's registry.py of each version
(https://github.com/vllm-project/vllm/blob/v0.11.0/vllm/model_executor/models/registry.py and the same
path at v0.33.0), not from model_traces/engine_registry.toml.
"""

import json
import subprocess
import sys

import pytest

from commbench import CommbenchError
from commbench.traffic import registry
from commbench.traffic.model_card import card_from_config, shipped_models
from tests.conftest import ROOT

# A small dense decoder of our own sizes; only `architectures` changes between the cases.
BASE = {"model_type": "llama", "hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
        "num_key_value_heads": 4, "intermediate_size": 2816, "vocab_size": 32000, "torch_dtype": "bfloat16"}


def _config(tmp_path, architectures, name="model"):
    cfg = dict(BASE)
    if architectures is not None:
        cfg["architectures"] = architectures
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


# ---- the data: entries read by hand from each version's registry.py ------------------------------------
@pytest.mark.parametrize("engine, arch, group, module", [
    # 0.11.0 _TEXT_GENERATION_MODELS: "Olmo3ForCausalLM": ("olmo2", "Olmo2ForCausalLM")
    ("vllm-v1", "Olmo3ForCausalLM", "generate", "olmo2"),
    # 0.33.0 moved Olmo3 to _TRANSFORMERS_SUPPORTED_MODELS: ("transformers", "TransformersForCausalLM")
    ("vllm-v2", "Olmo3ForCausalLM", "transformers_backend", "transformers"),
    # 0.11.0: "Step3VLForConditionalGeneration": ("step3_vl", ...) in _MULTIMODAL_MODELS
    ("vllm-v1", "Step3VLForConditionalGeneration", "generate", "step3_vl"),
    ("vllm-v1", "HunYuanMoEV1ForCausalLM", "generate", "hunyuan_v1"),
    ("vllm-v2", "HunYuanMoEV1ForCausalLM", "transformers_backend", "transformers"),
    ("vllm-v1", "MiniMaxText01ForCausalLM", "generate", "minimax_text_01"),
    ("vllm-v2", "MiniMaxM2ForCausalLM", "generate", "minimax_m2"),
    ("vllm-v1", "BertModel", "pooling", "bert"),
    ("vllm-v1", "DeepSeekMTPModel", "draft", "deepseek_mtp"),
])
def test_registry_entries_match_vllm(engine, arch, group, module):
    r = registry.resolve((arch,), engine)
    assert (r.group, r.module, r.resolved_as) == (group, module, arch)


def test_names_only_one_generation_serves():
    # absent from 0.11.0's registry.py, present in 0.33.0's
    assert registry.resolve(("Qwen3_5MoeForConditionalGeneration",), "vllm-v1") is None
    assert registry.served_by(("Qwen3_5MoeForConditionalGeneration",)) == ["vllm-v2"]
    # 0.33.0's _PREVIOUSLY_SUPPORTED_MODELS: "MiniMaxText01ForCausalLM": "0.23.0"
    assert registry.served_by(("MiniMaxText01ForCausalLM",)) == ["vllm-v1"]
    assert registry.engine_registry()["vllm-v2"]["removed"]["MiniMaxText01ForCausalLM"] == "0.23.0"
    assert registry.engine_registry()["vllm-v1"]["vllm_version"] == "0.11.0"


def test_suffix_swap_and_order_follow_inspect_model_cls():
    # _normalize_arch: a generate suffix is swapped for another: LlamaForConditionalGeneration -> LlamaForCausalLM
    r = registry.resolve(("LlamaForConditionalGeneration",), "vllm-v1")
    assert (r.architecture, r.resolved_as, r.module) == ("LlamaForConditionalGeneration", "LlamaForCausalLM", "llama")
    # the first name the registry knows decides, in the config's order
    r = registry.resolve(("NoSuchModelForCausalLM", "MistralForCausalLM"), "vllm-v1")
    assert r.architecture == "MistralForCausalLM"


# ---- choose_engine: refuse, switch, warn --------------------------------------------------------------
def test_choose_engine_switches_only_when_not_chosen():
    archs = ("Qwen3_5MoeForConditionalGeneration",)
    engine, notes = registry.choose_engine(archs, "vllm-v1", explicit=False)
    assert engine == "vllm-v2" and len(notes) == 1
    assert "Qwen3_5MoeForConditionalGeneration" in notes[0] and "traced as vllm-v2 (vLLM 0.33.0)" in notes[0]
    with pytest.raises(CommbenchError, match=r"Qwen3_5MoeForConditionalGeneration.*--engine vllm-v2"):
        registry.choose_engine(archs, "vllm-v1", explicit=True)
    assert registry.choose_engine(("LlamaForCausalLM",), "vllm-v1", explicit=True) == ("vllm-v1", ())


def test_choose_engine_says_when_transformers_backend_serves():
    engine, notes = registry.choose_engine(("Olmo3ForCausalLM",), "vllm-v2", explicit=True)
    assert engine == "vllm-v2" and len(notes) == 1 and "Transformers modeling backend" in notes[0]


# Nemotron-H with MoE layers ("E" in hybrid_override_pattern), our own sizes: 0.11.0's nemotron_h.py
# ALL_DECODER_LAYER_TYPES maps only M, - and *; 0.33.0's adds "E": NemotronHMoEDecoderLayer.
NEMOTRON_MOE = {"architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h", "hidden_size": 1024,
                "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 128,
                "intermediate_size": 2048, "vocab_size": 32000, "hybrid_override_pattern": "ME*EME",
                "n_routed_experts": 16, "num_experts_per_tok": 2, "moe_intermediate_size": 512, "mamba_num_heads": 16,
                "mamba_head_dim": 64, "ssm_state_size": 64, "n_groups": 4, "torch_dtype": "bfloat16"}


def test_a_registered_name_whose_file_cannot_build_the_layers():
    moe = card_from_config(NEMOTRON_MOE, "nemotron-moe")
    dense = card_from_config({**NEMOTRON_MOE, "hybrid_override_pattern": "M-*-M-"}, "nemotron-dense")
    assert registry.served_by(moe.architectures, moe.block_kinds) == ["vllm-v2"]
    assert registry.served_by(dense.architectures, dense.block_kinds) == ["vllm-v1", "vllm-v2"]
    with pytest.raises(CommbenchError, match=r"vllm-v1's nemotron_h.py \(vLLM 0.11.0\) cannot build its moe layers"):
        registry.choose_engine(moe.architectures, "vllm-v1", True, moe.block_kinds)
    assert registry.choose_engine(moe.architectures, "vllm-v1", False, moe.block_kinds)[0] == "vllm-v2"


def test_trace_of_nemotron_moe_switches(cli, tmp_path):
    path = tmp_path / "nemotron_moe.json"
    path.write_text(json.dumps(NEMOTRON_MOE))
    data = json.loads(cli("trace", path, "--mode", "tp", "--json").stdout)
    assert data["engine"] == "vllm-v2" and data["served_by"] == ["vllm-v2"]
    assert any("cannot build its moe layers" in w for w in data["warnings"])


# ---- the CLI ------------------------------------------------------------------------------------------
def test_trace_switches_to_the_generation_that_serves(cli, tmp_path):
    path = _config(tmp_path, ["Qwen3_5MoeForConditionalGeneration"])
    result = cli("trace", path, "--mode", "tp", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["engine"] == "vllm-v2" and data["served_by"] == ["vllm-v2"]
    assert any("traced as vllm-v2" in w for w in data["warnings"])
    assert "warning: " in result.stderr and "traced as vllm-v2" in result.stderr
    table = cli("trace", path, "--mode", "tp")
    assert table.exit_code == 0 and "engine vllm-v2 (switched" in table.stdout


def test_trace_refuses_a_chosen_generation_that_cannot_serve(cli, tmp_path):
    path = _config(tmp_path, ["Qwen3_5MoeForConditionalGeneration"])
    result = cli("trace", path, "--mode", "tp", "--engine", "vllm-v1", "--json")
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'Qwen3_5MoeForConditionalGeneration'" in lines[0] and "--engine vllm-v2" in lines[0]
    assert "Traceback" not in result.output


def test_trace_refuses_an_architecture_no_generation_serves(cli, tmp_path):
    csv = tmp_path / "ops.csv"
    result = cli("trace", _config(tmp_path, ["NotARealModelForCausalLM"]), "--mode", "tp", "--csv", csv)
    assert result.exit_code == 2 and not csv.exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'NotARealModelForCausalLM': no engine generation can serve it" in lines[0]
    assert "vllm-v1" in lines[0] and "vllm-v2" in lines[0]


def test_trace_refuses_a_pooling_model(cli, tmp_path):
    result = cli("trace", _config(tmp_path, ["BertModel"]), "--mode", "tp")
    assert result.exit_code == 2 and "only a pooling" in result.stderr


@pytest.mark.parametrize("value", [42, [], ["LlamaForCausalLM", 3]])
def test_bad_architectures_value(cli, tmp_path, value):
    if value == []:  # an empty list names nothing: not checked, and said
        result = cli("trace", _config(tmp_path, value), "--mode", "tp", "--json")
        assert result.exit_code == 0 and json.loads(result.stdout)["served_by"] is None
        return
    result = cli("trace", _config(tmp_path, value), "--mode", "tp")
    assert result.exit_code == 2 and "`architectures` must be a list" in result.stderr


def test_no_architectures_is_said(cli, tmp_path):
    result = cli("trace", _config(tmp_path, None), "--mode", "tp", "--json")
    data = json.loads(result.stdout)
    assert data["served_by"] is None and data["engine"] == "vllm-v1"
    assert any("names no `architectures`" in w for w in data["warnings"])


@pytest.mark.parametrize("model", shipped_models())
def test_shipped_cards_trace_under_both_generations(cli, model):
    for engine in ("vllm-v1", "vllm-v2"):
        result = cli("trace", model, "--mode", "tp", "--engine", engine, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["engine"] == engine and data["served_by"] == ["vllm-v1", "vllm-v2"] and data["warnings"] == []


def test_multimodal_wrapper_names_resolve_from_the_top_level():
    # Mistral3ForConditionalGeneration is a _MULTIMODAL_MODELS entry ("mistral3") in both versions
    card = card_from_config({**BASE, "architectures": ["Mistral3ForConditionalGeneration"]}, "m")
    assert card.architectures == ("Mistral3ForConditionalGeneration",)
    assert registry.served_by(card.architectures) == ["vllm-v1", "vllm-v2"]


# ---- the generator script, on a registry.py of our own in vLLM's shape -------------------------------
def test_generator_reads_registry_literals(tmp_path):
    models = tmp_path / "vllm" / "model_executor" / "models"
    config = tmp_path / "vllm" / "config"
    models.mkdir(parents=True)
    config.mkdir(parents=True)
    (models / "registry.py").write_text(
        '_TEXT_GENERATION_MODELS = {\n    "AForCausalLM": ("amod", "AForCausalLM"),\n}\n'
        '_MULTIMODAL_MODELS = {"BForConditionalGeneration": ("bmod", "B")}\n'
        '_EMBEDDING_MODELS = {"AForCausalLM": ("amod", "A"), "CModel": ("cmod", "C")}\n'
        '_TRANSFORMERS_SUPPORTED_MODELS = {"DForCausalLM": ("transformers", "TransformersForCausalLM")}\n'
        '_PREVIOUSLY_SUPPORTED_MODELS = {"EForCausalLM": "0.1.0"}\n'
        '_VLLM_MODELS = {**_TEXT_GENERATION_MODELS}\n')
    (config / "model.py").write_text(
        '_SUFFIX_TO_DEFAULTS = [("ForCausalLM", ("generate", "none")), ("Model", ("pooling", "embed"))]\n')
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "engine_registry.py"),
                          "--engine", f"vllm-v9=9.9.9={tmp_path / 'vllm'}"], capture_output=True, text=True, check=True)
    import tomllib

    data = tomllib.loads(out.stdout)["engines"]["vllm-v9"]
    assert data["vllm_version"] == "9.9.9" and data["generate_suffixes"] == ["ForCausalLM"]
    assert data["generate"] == {"AForCausalLM": "amod", "BForConditionalGeneration": "bmod"}
    assert data["pooling"] == {"CModel": "cmod"}  # AForCausalLM is served for generation first
    assert data["transformers_backend"] == {"DForCausalLM": "transformers"}
    assert data["removed"] == {"EForCausalLM": "0.1.0"}


# ---- predict, compute, explain: the same registry check as trace ---------------------------------------
@pytest.mark.parametrize("command", [
    ["predict", "--mode", "tp", "--batch", "1", "--json"],
    ["compute", "--mode", "tp", "--iters", "1", "--gemm-tokens", "1", "--json"],
    ["explain", "--batch", "2", "--json"],
])
def test_pricing_commands_refuse_what_no_generation_serves(cli, tmp_path, command):
    # a pooling name (BertModel: _EMBEDDING_MODELS in both registry.py) and a name in neither registry:
    # trace's one line, exit 2, nothing on stdout
    for archs, says in ((["BertModel"], "only a pooling"), (["NotARealModelForCausalLM"], "no engine generation")):
        result = cli(command[0], _config(tmp_path, archs), *command[1:])
        assert result.exit_code == 2 and result.stdout == "", result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and "Traceback" not in result.output


def test_predict_says_the_generation_that_serves_and_what_it_priced(cli, tmp_path):
    # Qwen3_5MoeForConditionalGeneration: absent from 0.11.0's registry.py, in 0.33.0's; predict prices the
    # default generation's collectives and cannot switch, so it says both (no "traced as": it traces nothing)
    path = _config(tmp_path, ["Qwen3_5MoeForConditionalGeneration"])
    result = cli("predict", path, "--mode", "tp", "--batch", "1", "--json")
    assert result.exit_code == 0, result.output
    warnings = json.loads(result.stdout)["warnings"]
    note = next(w for w in warnings if "Qwen3_5MoeForConditionalGeneration" in w)
    assert "not in vllm-v1's model registry (vLLM 0.11.0)" in note and "vllm-v2 (vLLM 0.33.0) serves it" in note
    assert "--engine vllm-v2" in note and "traced as" not in note
    assert f"warning: {note}" in result.stderr
    # a model both serve: no note
    plain = cli("predict", _config(tmp_path, ["LlamaForCausalLM"], "llama"), "--mode", "tp", "--batch", "1", "--json")
    assert not any("registry" in w for w in json.loads(plain.stdout)["warnings"])
    explained = cli("explain", path, "--batch", "2", "--json")
    assert explained.exit_code == 0 and any("explain models it as vllm-v1" in w for w in json.loads(explained.stdout)["warnings"])
