import json
import re

from commbench.cli import main

README = (__import__("pathlib").Path(__file__).resolve().parent.parent / "README.md").read_text()


def all_commands(group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if hasattr(cmd, "commands"):
            yield from all_commands(cmd, prefix + (name,))


def test_every_command_has_help_with_example_and_is_in_readme(cli):
    for path, cmd in all_commands(main):
        result = cli(*path, "--help")
        assert result.exit_code == 0, path
        assert "Example:" in result.output, path
        assert f"commbench {' '.join(path)}" in README, f"README does not mention commbench {' '.join(path)}"


def test_trace_json_schema(cli):
    result = cli("trace", "gpt-oss-120b", "--mode", "tp", "--batch", "128", "--scenario", "balanced", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert {k: doc[k] for k in ("model", "mode", "tp", "pp", "batch", "isl", "osl")} == {
        "model": "gpt-oss-120b", "mode": "tp", "tp": 2, "pp": 1, "batch": 128, "isl": 1024, "osl": 1024}
    decode_ar = [o for o in doc["ops"] if o["phase"] == "decode" and o["collective"] == "all_reduce"]
    assert sum(o["calls"] for o in decode_ar) == 73
    assert all(o["msg_bytes"] == 128 * 2880 * 2 for o in decode_ar)


def test_trace_csv(cli, tmp_path):
    out = tmp_path / "ops.csv"
    assert cli("trace", "llama-3.1-8b-instruct", "--mode", "pp", "--csv", out).exit_code == 0
    header = out.read_text().splitlines()[0].split(",")
    assert {"phase", "site", "collective", "dtype", "msg_bytes", "calls"} <= set(header)


def test_bad_inputs_one_line_exit_2(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    cases = {
        ("trace", "gpt-oss-12b"): r"unknown model 'gpt-oss-12b'\. Did you mean gpt-oss-120b",
        ("trace", "gpt-oss-120b", "--tp", "3"): r"tp=3 does not divide num_attention_heads=64",
        ("trace", "gpt-oss-120b", "--batch", "0"): r"batch must be a positive integer, got 0",
        ("trace", "gpt-oss-120b", "--isl", "-5"): r"isl must be a positive integer, got -5",
        ("trace", "gpt-oss-120b", "--osl", "0"): r"osl must be a positive integer, got 0",
        ("trace", "gpt-oss-120b", "--mode", "dp"): r"unknown mode 'dp'; valid: tp, pp, ep",
        ("trace", "llama-3.1-8b-instruct", "--mode", "ep"): r"mode ep \(dp=2\) needs an MoE model",
        ("trace", "gpt-oss-120b", "--engine", "vllm-v3"): r"unknown engine 'vllm-v3'; valid: vllm-v1, vllm-v2",
        ("trace", "gpt-oss-120b", "--moe-kernel", "cutlass"): r"unknown MoE kernel 'cutlass'; valid: triton, marlin",
        ("trace", "gpt-oss-120b", "--mode", "ep", "--all2all", "deepep"): r"unknown all2all backend 'deepep'",
        ("trace", "gpt-oss-120b", "--dp", "2"): r"--dp 2 applies to mode ep only",
        ("trace", "gpt-oss-120b", "--scenario", "chat"): r"unknown scenario 'chat'; valid: balanced",
        ("trace", str(bad)): r"cannot read model config",
        ("trace", str(tmp_path / "none.json")): r"no such file",
    }
    for args, pattern in cases.items():
        out = tmp_path / "partial.csv"
        result = cli(*args, "--csv", out)
        assert result.exit_code == 2, args
        lines = [l for l in result.output.splitlines() if l.strip()]
        assert len(lines) == 1 and re.search(pattern, lines[0]), (args, result.output)
        assert not out.exists()


def _without(modules, *args):
    """Run the CLI in a fresh interpreter where `modules` cannot be imported (an install without them)."""
    import subprocess
    import sys

    blocked = "; ".join(f"sys.modules[{m!r}] = None" for m in modules)
    code = f"import sys; {blocked}; from commbench.cli import main; main({list(map(str, args))!r})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_base_install_traces_and_predicts_without_torch_or_matplotlib():
    for args in (("trace", "gpt-oss-120b", "--mode", "pp"), ("predict", "gpt-oss-120b", "--batch", "1,128"),
                 ("explain", "gpt-oss-120b"), ("accuracy",)):
        proc = _without(("torch", "matplotlib"), *args)
        assert proc.returncode == 0, (args, proc.stderr[-500:])
    proc = _without(("torch",), "sweep", "all_reduce", "--max-bytes", "64")
    assert proc.returncode == 2
    assert "this needs torch, which this install lacks: pip install 'commbench[measure]'" in proc.stderr


def test_report_without_matplotlib_names_the_extra_and_writes_nothing(tmp_path):
    target = tmp_path / "no-plots"
    proc = _without(("matplotlib",), "report", "gpt-oss-120b", "--batch", "1", "--out", str(target))
    assert proc.returncode == 2 and "pip install 'commbench[plots]'" in proc.stderr
    assert not target.exists()


def test_piped_output_is_tsv_that_cut_reads(cli):
    result = cli("sweep", "all_reduce", "--max-bytes", "64", "--iters", "2")  # CliRunner is not a terminal
    assert result.exit_code == 0, result.output
    stdout = getattr(result, "stdout", result.output)  # what a pipe sees (the progress bar is on stderr)
    lines = [line for line in stdout.splitlines() if not line.startswith("#")]
    header = lines[0].split("\t")
    assert header[:2] == ["msg_bytes", "count"] and "busbw_gbps" in header and "wrong" in header
    rows = [line.split("\t") for line in lines[1:]]
    assert [int(r[0]) for r in rows] == [8, 16, 32, 64]
    for r in rows:
        assert len(r) == len(header)
        float(r[header.index("busbw_gbps")])  # full-precision numbers, no thousands separators or boxes


def test_an_80_column_table_keeps_every_number_whole(cli, monkeypatch):
    from commbench.cli import base

    monkeypatch.setattr(base.console, "width", 80)
    result = cli("--format", "table", "predict", "gpt-oss-120b", "--batch", "1,128")
    assert result.exit_code == 0, result.output
    table_lines = [line for line in result.output.splitlines() if line.startswith(("│", "┃", "┏", "└"))]
    assert table_lines and all(len(line) <= 80 for line in table_lines)
    assert "…" not in result.output  # nothing cut: whole columns are dropped instead, and named
    assert "not shown at 80 columns" in result.output and "output_tok_s" in result.output
