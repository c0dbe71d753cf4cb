"""Bad input at the edge: one line naming the value and the choices, exit 2, no file, before any rank starts."""

import json

import pytest

LLAMA = json.loads(open(__import__("tests.conftest", fromlist=["ROOT"]).ROOT / "model_traces" / "llama-3.1-8b-instruct.json").read())


def _config(tmp_path, **fields):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA, **fields}))
    return path


def _file(tmp_path, name, content):
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


CASES = [
    (lambda t: ("trace", _config(t, hidden_size="abc"), "--mode", "tp"), "hidden_size = 'abc' must be a whole number"),
    (lambda t: ("trace", _config(t, hidden_size=1e30), "--mode", "tp"), "hidden_size = 1e+30 must be a whole number in 1..1048576"),
    (lambda t: ("predict", _config(t, vocab_size=-5), "--batch", "1"), "vocab_size = -5 must be a whole number"),
    (lambda t: ("trace", _config(t, num_attention_heads=32.5), "--mode", "tp"), "num_attention_heads = 32.5"),
    (lambda t: ("sweep", "all_reduce", "--max-bytes", "inf"), "bad size 'inf'"),
    (lambda t: ("sweep", "all_reduce", "--max-bytes", "1e99"), "bad size '1e99'"),
    (lambda t: ("sweep", "all_reduce", "--max-bytes", "512G"), "local ranks' buffers; this host has"),
    (lambda t: ("predict", "gpt-oss-120b", "--hardware", _file(t, "hw.toml", b"\x00\xff\xfe")), "is not readable text"),
    (lambda t: ("predict", "gpt-oss-120b", "--fabric", _file(t, "f.toml", "[[segment]\n")), "is not valid TOML"),
    (lambda t: ("predict", "gpt-oss-120b", "--fabric", _file(t, "z.toml", "[[segment]]\nup_to_bytes = inf\n"
                                                            "alpha_us = 1\nbusbw_gbps = 0\n")), "busbw_gbps = 0 must be above 0"),
    (lambda t: ("fabric", "fit", _file(t, "s.csv", "collective,msg_bytes,ranks,time_us_p50\nall_reduce,8,2,abc\n")),
     "time_us_p50 = 'abc' must be a positive finite number"),
    (lambda t: ("fabric", "fit", _file(t, "s.csv", "collective,msg_bytes,ranks,time_us_p50\nall_reduce,8,2,-1\n")),
     "time_us_p50 = -1"),
    (lambda t: ("fabric", "validate", "--expect", "1gbit", "--sweep", _file(t, "s.csv", "size,t\n8,1\n")),
     "lacks columns collective, msg_bytes, ranks, time_us_p50"),
    (lambda t: ("compute", "debug-tiny", "--device", "nope"), "unknown --device 'nope'; valid: cpu, cuda, cuda:N"),
    (lambda t: ("predict", "gpt-oss-120b", "--mode", "tp", "--tp", "0", "--batch", "1"), "tp, pp and dp must be >= 1, got tp=0"),
    (lambda t: ("sweep", "all_reduce", "--link", _file(t, "l.toml", b"\xff")), "link file"),
    (lambda t: ("sweep", "all_reduce", "--target-ci", "0"), "--target-ci 0 must be between 0 and 1"),
    (lambda t: ("sweep", "all_reduce", "-f", "1"), "the size step factor must be above 1, got 1"),
    (lambda t: ("sweep", "all_reduce", "--target-ci", "-0.1"), "--target-ci -0.1 must be between 0 and 1"),
    (lambda t: ("sweep", "all_reduce", "-d", "float8"), "unknown datatype 'float8'; valid: float32, float64, float16, bfloat16"),
    (lambda t: ("sweep", "all_reduce", "-o", "avg"), "the gloo backend has no 'avg' reduction; valid: sum, prod, max, min"),
    (lambda t: ("sweep", "all_reduce", "-o", "mean"), "unknown reduction op 'mean'; valid: sum, prod, max, min, avg"),
    (lambda t: ("sweep", "all_reduce", "--backend", "mpi", "-d", "bfloat16"), "the mpi backend has no bfloat16; valid: float32"),
    (lambda t: ("sweep", "all_reduce", "--out-of-place"), "all_reduce on gloo runs in-place only; --out-of-place is not available"),
    (lambda t: ("sweep", "all_gather", "-o", "max"), "-o max applies to all_reduce and reduce_scatter"),
    (lambda t: ("sweep", "all_reduce", "--timing", "c-loop"), "--timing c-loop is the mpi backend's compiled loop"),
    (lambda t: ("sweep", "broadcast", "--backend", "mpi", "--timing", "c-loop"), "--timing c-loop times all_reduce, all_gather"),
    # issue 24: values that tracebacked or were accepted; each refused before any rank starts
    *[(lambda t, v=v: ("sweep", "all_reduce", "--timeout", v),
       f"commbench: error: --timeout {v} must be a number of seconds above 0 and at most 86,400 (a day)")
      for v in ("nan", "inf", "0", "-1")],
    (lambda t: ("sweep", "all_reduce", "-b", "3", "-e", "3"),
     "commbench: error: -b 3 -e 3 holds no whole float32 element (4 B): -e must be at least 4"),
    (lambda t: ("sweep", "all_reduce", "--iters", "0"), "commbench: error: --iters 0 must be >= 1"),
    (lambda t: ("sweep", "all_reduce", "--ranks", "1"), "commbench: error: --ranks 1 must be >= 2"),
    (lambda t: ("fabric", "validate", "--expect", "1gbit", "--iters", "0"), "commbench: error: --iters 0 must be >= 1"),
    (lambda t: ("fabric", "validate", "--expect", "1gbit", "--ranks", "1"), "commbench: error: --ranks 1 must be >= 2"),
    (lambda t: ("fabric", "validate", "--expect", "1gbit", "--timeout", "nan"), "--timeout nan must be a number of seconds"),
    (lambda t: ("trace", "debug-tiny", "--replay", "--timeout", "0"), "--timeout 0 must be a number of seconds above 0"),
    (lambda t: ("trace", _file(t, "deep.json", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")),
     "its JSON is nested deeper than the interpreter's recursion limit; a config.json is an object of fields"),
    (lambda t: ("predict", "gpt-oss-120b", "--fabric", _file(t, "deep.toml", "a = " + "[" * 5000 + "]" * 5000)),
     "is not valid TOML: nested deeper than the reader goes"),
    (lambda t: ("fabric", "fit", _file(t, "deep-log.json", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")),
     "deep-log.json: unknown format; expected a commbench sweep table"),
    (lambda t: ("predict", "gpt-oss-120b", "--published", _file(t, "deep-r.json", "[" * 100_000 + "]" * 100_000)),
     "deep-r.json: nested deeper than the JSON reader goes; not a `vllm bench serve` result"),
    (lambda t: ("trace", "debug-tiny", "--out", t / "r.csv"),
     "saves the replay table: add --replay (the traced op rows: --csv FILE)"),
    # head counts that do not fit together (llama-3.1-8b: 32 heads, 8 KV heads)
    (lambda t: ("trace", _config(t, num_key_value_heads=64)),
     ": num_key_value_heads = 64 exceeds num_attention_heads = 32; each KV head "
     "serves a whole group of query heads"),
    (lambda t: ("trace", _config(t, num_key_value_heads=5)),
     "num_attention_heads = 32 is not a multiple of num_key_value_heads = 5 (grouped-query attention)"),
    (lambda t: ("predict", _config(t, num_key_value_heads=0), "--batch", "1"),
     "num_key_value_heads = 0 names no KV head; leave it out for as many as the 32 attention heads"),
    (lambda t: ("trace", _config(t, num_attention_heads=0)), "num_attention_heads = 0 must be a whole number in 1..16384"),
]


@pytest.mark.parametrize("make_args,message", CASES, ids=[c[1][:40] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_no_file(cli, tmp_path, make_args, message):
    args = make_args(tmp_path)
    out = tmp_path / "out" / "result.csv"
    takes_out = args[0] in ("sweep", "predict", "compute")
    result = cli(*args, *(("--out", out) if takes_out else ()))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists()


def test_unwritable_out_is_refused_before_the_run(cli):
    result = cli("sweep", "all_reduce", "--max-bytes", "64", "--out", "/proc/commbench/x.csv")
    assert result.exit_code == 2 and "cannot write '/proc/commbench/x.csv'" in result.output
    result = cli("trace", "gpt-oss-120b", "--csv", "/proc/commbench/x.csv")
    assert result.exit_code == 2 and "cannot write" in result.output


def test_report_with_a_bad_expect_makes_no_folder(cli, tmp_path):
    result = cli("report", "gpt-oss-120b", "--expect", "nope", "--out", tmp_path / "rep")
    assert result.exit_code == 2 and "unknown link 'nope'" in result.output
    assert not (tmp_path / "rep").exists()


def test_fit_out_escapes_the_sweep_name(cli, tmp_path):
    """A quote or newline in the sweep's name cannot break the profile or inject segments."""
    import tomllib

    name = 'a"b\n[[segment]]'
    sweep = tmp_path / f"{name}.csv"
    sweep.write_text("collective,msg_bytes,ranks,time_us_p50\n" + "".join(
        f"all_reduce,{s},2,{10 + s / 1e3}\n" for s in (8, 1024, 65536, 1048576)))
    out = tmp_path / "fab.toml"
    result = cli("fabric", "fit", sweep, "--out", out)
    assert result.exit_code == 0, result.output
    raw = tomllib.loads(out.read_text())
    assert raw["name"] == name and len(raw["segment"]) == 1


def test_a_partial_sweep_is_judged_with_a_word(cli, tmp_path):
    import pandas as pd

    from commbench.results import save_table

    rows = pd.DataFrame({"collective": "all_reduce", "msg_bytes": [8, 16, 32], "ranks": 2,
                         "time_us_p50": [300.0, 301.0, 302.0], "busbw_gbps": 0.0001, "wrong": 0})
    path = tmp_path / "partial.csv"
    save_table(rows, path, {"complete": False, "error": "rank 1 exited with code 17"})
    result = cli("fabric", "validate", "--expect", "1gbit", "--sweep", path, "--json")
    assert "partial sweep" in json.loads(result.output)["partial"]
    result = cli("report", "--sweep", path, "--out", tmp_path / "rep")
    assert "**Partial sweep**" in (tmp_path / "rep" / "report.md").read_text()
