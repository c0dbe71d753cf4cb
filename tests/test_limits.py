"""Issue 24: limits from the engine and the machine, each naming its bound; refusals that were
tracebacks or silent acceptances. Every case: one line, exit 2, nothing written, no rank started."""

import json
import math
import os
import socket

import pytest

from commbench import CommbenchError
from tests.conftest import ROOT

LLAMA = json.loads((ROOT / "model_traces" / "llama-3.1-8b-instruct.json").read_text())
GPT_OSS = json.loads((ROOT / "model_traces" / "gpt-oss-120b.json").read_text())


def _refused(result, line: str) -> None:
    """Exit 2 and exactly one output line, equal to `line`."""
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [line], result.output


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return path


# ---- limits of a workload: the model's context, the engine's concurrency, steps, memory ------------

def test_isl_beyond_the_models_context_length_is_refused_naming_it(cli, tmp_path):
    # gpt-oss-120b's config.json: max_position_embeddings 131072 (= rope_scaling yarn: 4096 x 32)
    line = ("commbench: error: ISL 1,000,000,000,000 + OSL 1,024 = 1,000,000,001,024 tokens exceeds gpt-oss-120b's "
            "context length 131,072 (max_position_embeddings); vLLM refuses a longer request: lower --isl/--osl")
    _refused(cli("trace", "gpt-oss-120b", "--isl", "1000000000000"), line)
    out = tmp_path / "p.csv"
    result = cli("predict", "gpt-oss-120b", "--batch", "1", "--isl", "1000000000000", "--out", out)
    assert result.exit_code == 2 and line in result.output and not out.exists()
    # at the bound exactly: 130048 + 1024 = 131072 is accepted
    assert cli("trace", "gpt-oss-120b", "--isl", "130048", "--json").exit_code == 0


def test_context_length_is_derived_as_vllm_derives_it():
    from commbench.traffic.limits import context_length

    assert context_length({"max_position_embeddings": 4096}) == (4096, "max_position_embeddings")
    assert context_length({"n_positions": 1024, "max_position_embeddings": 2048}) == (1024, "n_positions")  # smallest
    assert context_length({"max_position_embeddings": 2048, "model_max_length": 8192}) == (8192, "model_max_length")
    yarn = {"max_position_embeddings": 131072,
            "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "original_max_position_embeddings": 4096}}
    assert context_length(yarn)[0] == 4096 * 32
    llama3 = {"max_position_embeddings": 131072, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    assert context_length(llama3)[0] == 131072  # llama3 scaling is already in the field
    assert context_length({"max_position_embeddings": 4096, "rope_scaling": {"type": "linear", "factor": 2}})[0] == 8192
    assert context_length({"hidden_size": 8}) is None


def test_batch_beyond_the_token_budget_is_refused(cli, tmp_path):
    # vLLM: max_num_seqs <= max_num_batched_tokens (default 8192 here)
    line = ("commbench: error: --batch 1,000,000,000 exceeds the 8,192 tokens a scheduler step holds (--token-budget, "
            "x pp): vLLM runs at most that many requests at once (max_num_seqs <= max_num_batched_tokens): lower "
            "--batch or raise --token-budget")
    _refused(cli("trace", "gpt-oss-120b", "--batch", "1000000000"), line)
    out = tmp_path / "p.csv"
    result = cli("predict", "gpt-oss-120b", "--batch", "1000000000", "--out", out)
    assert result.exit_code == 2 and line in result.output and not out.exists()
    # pp=2 keeps two micro-batches of 8192 in flight: 16384 requests
    assert "exceeds the 16,384 tokens" in cli("trace", "gpt-oss-120b", "--mode", "pp", "--batch", "16385").output


def test_engine_steps_are_bounded_where_the_config_names_no_context(cli, tmp_path):
    config = _write(tmp_path / "nolen.json", {k: v for k, v in LLAMA.items() if k != "max_position_embeddings"})
    # ceil(1e12 / 8192) = 122,070,313 prefill steps, then 1023 more decode steps
    _refused(cli("trace", config, "--isl", "1000000000000"),
             "commbench: error: 1 requests of ISL 1,000,000,000,000 over 8,192 tokens a step, then OSL 1,024, is at least "
             "122,071,336 engine steps; commbench walks at most 10,000,000: lower --isl, --osl or --batch")


def test_a_schedule_beyond_this_hosts_memory_is_refused(cli, tmp_path, monkeypatch):
    import commbench.traffic.limits as limits

    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 16 * 2**30)
    config = _write(tmp_path / "nolen.json", {k: v for k, v in LLAMA.items() if k != "max_position_embeddings"})
    # B = budget = 1e8, ISL = OSL = 1024: P = 1024 prefill steps; 8 B x 1e8 x (1024 + 1025) + 24 B x 1e8
    need = 8 * 10**8 * (1024 + 1025) + 24 * 10**8
    _refused(cli("trace", config, "--batch", "100000000", "--token-budget", "100000000"),
             f"commbench: error: the schedule of 100,000,000 requests (ISL 1,024, OSL 1,024) needs up to "
             f"{need / 2**30:.1f} GiB; this host has 16.0 GiB available: lower --batch")


# ---- limits of a sweep ----------------------------------------------------------------------------

def test_sizes_per_sweep_are_bounded(cli, tmp_path):
    steps = math.floor(19 * math.log(2) / math.log(1.0000001)) + 1  # 8 B to 4 MiB = 2^19 x 8
    out = tmp_path / "s.csv"
    result = cli("sweep", "all_reduce", "-f", "1.0000001", "--out", out)
    _refused(result, f"commbench: error: -f 1.0000001 from 8 to 4,194,304 B is {steps:,} steps; a sweep takes at most "
                     "10,000 (a size per step, each measured for up to a second): use a larger -f")
    assert steps == 131_697_971 and not out.exists()


def test_a_sweep_that_may_take_hours_says_so_first(cli, monkeypatch):
    import commbench.measure.world as world
    from commbench.measure.sweeps import sizes_between

    monkeypatch.setattr(world, "run_job", lambda *a, **k: None)  # no world: the note comes before any rank
    result = cli("sweep", "all_reduce", "-f", "1.002", "-e", "4M")
    rows = len(sizes_between(8, 4 * 2**20, 1.002))  # gloo's all_reduce: in place only, one row per size
    assert rows > 3600 and result.exit_code == 0
    assert (f"note: {rows:,} rows at up to 1 s of samples each: this sweep may take about {rows / 3600:.1f} hours"
            in result.output)
    assert "note:" not in cli("sweep", "all_reduce", "-f", "1.002", "-e", "4M", "--iters", "5").output


def test_embedded_ranks_are_bounded_by_this_hosts_cores_and_memory(cli, monkeypatch):
    import commbench.results as results

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    _refused(cli("sweep", "all_reduce", "--ranks", "10000"),
             "commbench: error: --ranks 10000: the embedded world runs one process per rank on this host, at most 4 per "
             "core and it has 2 cores (8 ranks); run more ranks under a launcher (mpiexec, torchrun, srun) across hosts")
    monkeypatch.setattr(results, "host_memory_bytes", lambda: 1.0 * 2**30)
    _refused(cli("sweep", "all_reduce", "--ranks", "8"),
             "commbench: error: --ranks 8 needs about 2.0 GiB for the ranks' processes (256 MiB each); this host has "
             "1.0 GiB available")


# ---- launcher environments that describe another world --------------------------------------------

def test_launcher_variables_that_describe_no_world_are_refused(cli, monkeypatch):
    from commbench.measure.launcher import detect

    with pytest.raises(CommbenchError, match="OMPI_COMM_WORLD_SIZE=2 is set but OMPI_COMM_WORLD_RANK is not"):
        detect({"OMPI_COMM_WORLD_SIZE": "2"})
    with pytest.raises(CommbenchError, match="WORLD_SIZE=0: the launcher describes an empty world"):
        detect({"RANK": "0", "WORLD_SIZE": "0"})
    assert detect({"RANK": "0", "WORLD_SIZE": "1"}).size == 1  # a world of one is a world (one GPU, one NCCL rank)
    with pytest.raises(CommbenchError, match=r"RANK=2 is outside the WORLD_SIZE=2 world \(ranks 0..1\)"):
        detect({"RANK": "2", "WORLD_SIZE": "2"})
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    _refused(cli("sweep", "all_reduce", "--backend", "mpi", "-e", "64"),
             "commbench: error: OMPI_COMM_WORLD_SIZE=2 is set but OMPI_COMM_WORLD_RANK is not: this process was not "
             "started by mpiexec (unset OMPI_COMM_WORLD_SIZE, or start every rank with mpiexec)")
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "0")
    _refused(cli("sweep", "all_reduce", "-e", "64"),
             "commbench: error: WORLD_SIZE=0: the launcher describes an empty world; valid: 1 or more ranks "
             "(torchrun --nproc-per-node N, mpiexec -n N)")


def test_a_world_of_one_is_measured_and_titled_as_one_rank(tmp_path):
    """torchrun with one process: the sweep runs, every row and the title say 1 rank, and busbw is 0
    (all-reduce's factor 2 (n - 1) / n at n = 1), not a 2-rank title over a 1-rank measurement."""
    import subprocess
    import sys

    import pandas as pd

    out = tmp_path / "one.csv"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "-m", "commbench",
                           "sweep", "all_reduce", "-e", "64", "--iters", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "all_reduce, gloo, 1 ranks," in proc.stdout
    frame = pd.read_csv(out)
    assert set(frame["ranks"]) == {1} and (frame["busbw_gbps"] == 0).all() and (frame["algbw_gbps"] > 0).all()


def test_a_gloo_interface_that_does_not_exist_is_named(cli, monkeypatch):
    here = sorted(name for _, name in socket.if_nameindex())
    assert "bogus0" not in here
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "bogus0")
    _refused(cli("sweep", "all_reduce", "-e", "64"),
             f"commbench: error: GLOO_SOCKET_IFNAME=bogus0: no interface bogus0 on this host; valid: {', '.join(here)}")
    result = cli("fabric", "validate", "--expect", "1gbit")
    assert result.exit_code == 2 and "GLOO_SOCKET_IFNAME=bogus0: no interface bogus0" in result.output


# ---- outputs that cannot be written: refused before any work --------------------------------------

@pytest.mark.parametrize("args", [("fabric", "fit", "SWEEP", "--out", "{bad}/f.toml"),
                                  ("fabric", "infer", "--out", "{bad}/f.toml"),
                                  ("accuracy", "--out", "{bad}/a.csv"),
                                  ("sweep", "all_reduce", "--out", "{bad}/s.csv")])
def test_out_under_a_file_is_refused_before_the_work(cli, tmp_path, args):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    sweep = tmp_path / "s.csv"
    sweep.write_text("collective,msg_bytes,ranks,time_us_p50\n" + "".join(
        f"all_reduce,{s},2,{10 + s / 1e3}\n" for s in (8, 1024, 65536, 1048576)))
    args = [str(sweep) if a == "SWEEP" else a.format(bad=blocker) for a in args]
    _refused(cli(*args), f"commbench: error: cannot write '{args[-1]}': '{blocker}' is not a folder")


@pytest.mark.parametrize("args", [("report", "gpt-oss-120b", "--out", "{bad}/rep"),
                                  ("accuracy", "--report", "{bad}/rep")])
def test_report_folders_that_cannot_be_written_are_refused_before_the_work(cli, tmp_path, args):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    _refused(cli(*[a.format(bad=blocker) for a in args]),
             f"commbench: error: cannot write folder '{blocker}/rep': '{blocker}' is not a folder")
    _refused(cli(*[a.format(bad="/proc/commbench") for a in args]),
             "commbench: error: cannot write folder '/proc/commbench/rep': No such file or directory")
    assert not os.path.exists("/proc/commbench")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a mode-555 folder")
def test_a_read_only_folder_is_refused(cli, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    _refused(cli("fabric", "infer", "--out", ro / "f.toml"), f"commbench: error: cannot write '{ro}/f.toml': Permission denied")
    _refused(cli("report", "gpt-oss-120b", "--out", ro / "rep"),
             f"commbench: error: cannot write folder '{ro}/rep': Permission denied")


def test_empty_out_is_refused(cli, tmp_path):
    line = "commbench: error: an empty output path names no file; give one like results.csv"
    _refused(cli("sweep", "all_reduce", "--out", ""), line)
    _refused(cli("predict", "gpt-oss-120b", "--batch", "1", "--out", ""), line)
    _refused(cli("trace", "gpt-oss-120b", "--csv", ""), line)
    _refused(cli("report", "gpt-oss-120b", "--out", ""),
             "commbench: error: an empty output folder names no folder; give one like reports/my-run")
    _refused(cli("fabric", "infer", "--out", ""), "commbench: error: --out '': a fabric profile is saved as .toml")


def test_a_sidecar_path_that_is_a_folder_fails_before_the_run(cli, tmp_path, monkeypatch):
    import commbench.measure.world as world

    def no_run(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr(world, "run_job", no_run)
    (tmp_path / "x.csv.meta.json").mkdir()
    _refused(cli("sweep", "all_reduce", "-e", "64", "--out", tmp_path / "x.csv"),
             f"commbench: error: cannot write '{tmp_path}/x.csv.meta.json': it is a folder")
    assert not (tmp_path / "x.csv").exists()


# ---- text from files shown as it is ---------------------------------------------------------------

def test_a_partial_sweeps_saved_error_is_not_read_as_markup(cli, tmp_path):
    import pandas as pd

    from commbench.results import save_table

    error = "rank 1: RuntimeError: [/__w/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed [bold]"
    rows = pd.DataFrame({"collective": "all_reduce", "msg_bytes": [8, 16, 32], "ranks": 2,
                         "time_us_p50": [300.0, 301.0, 302.0], "busbw_gbps": 0.0001, "wrong": 0})
    path = tmp_path / "[red]partial.csv"
    save_table(rows, path, {"complete": False, "error": error})
    result = cli("--format", "table", "fabric", "validate", "--expect", "1gbit", "--sweep", path)
    assert result.exit_code in (0, 1), result.output  # a verdict, not a traceback
    assert f"complete: false, {error}" in result.output.replace("\n", "")
    assert "partial.csv" in result.output


# ---- configs whose fields do not fit together, or that name no known family -----------------------

def test_zero_experts_with_a_top_k_is_traced_dense_with_a_word(cli, tmp_path):
    config = _write(tmp_path / "zero-experts.json", {**GPT_OSS, "num_local_experts": 0})
    result = cli("trace", config, "--json")
    assert result.exit_code == 0
    warning = ("num_local_experts = 0 with num_experts_per_tok = 4: traced as a dense model (a dense MLP of "
               "intermediate_size in every layer); a MoE config names its experts")
    assert f"warning: {warning}" in result.output
    doc = json.loads(result.output.splitlines()[-1])
    assert warning in doc["warnings"] and not any(op["site"] == "layer.moe" for op in doc["ops"])


def test_an_unknown_model_type_is_traced_as_default_with_a_word(cli, tmp_path):
    config = _write(tmp_path / "new.json", {**LLAMA, "model_type": "totally_new"})
    result = cli("trace", config, "--json")
    assert result.exit_code == 0
    assert ("warning: model_type 'totally_new' is in no family of model_traces/architectures.toml: traced with "
            "[default]'s layout") in result.output
    assert "is in no family" not in cli("trace", _write(tmp_path / "llama.json", LLAMA), "--json").output
