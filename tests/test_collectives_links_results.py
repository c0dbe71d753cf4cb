import pandas as pd
import pytest

from commbench import CommbenchError
from commbench.collectives import get_collective
from commbench.links import LINKS, parse_link, theory_time_s
from commbench.results import environment_metadata, load_table, save_table


def test_busbw_identities():
    ar, ag, sr = get_collective("all_reduce"), get_collective("all_gather"), get_collective("send_recv")
    # At n = 2 an all-reduce's busbw equals its algbw; at n = 8 it is 2*7/8 = 1.75x.
    assert ar.busbw_gbps(1e9, 1.0, 2) == ar.algbw_gbps(1e9, 1.0) == 1.0
    assert ar.busbw_gbps(1e9, 1.0, 8) == pytest.approx(1.75)
    assert ag.busbw_factor(4) == pytest.approx(0.75) and sr.busbw_factor(4) == 1
    assert ag.msg_bytes(count=10, typesize=2, n=4) == 80 and ar.msg_bytes(10, 2, 4) == 20


def test_link_parsing_and_theory():
    assert parse_link("1gbit").bandwidth_Bps == pytest.approx(125e6)
    assert parse_link("12.5GB/s").bandwidth_Bps == pytest.approx(12.5e9)
    assert parse_link("400Mbit").bandwidth_Bps == pytest.approx(50e6)
    assert LINKS["pcie5x4"].bandwidth_gbps == pytest.approx(32 * 4 * 128 / 130 / 8)
    with pytest.raises(CommbenchError, match="unknown link 'fast'"):
        parse_link("fast")
    link = parse_link("1gbit")
    # ring all-reduce on 4 ranks: 6 latency steps + 2*3/4 * S / B
    t = theory_time_s("all_reduce", 1e6, 4, link)
    assert t == pytest.approx(6 * link.latency_s + 1.5 * 1e6 / 125e6)


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_save_load_roundtrip(tmp_path, suffix):
    frame = pd.DataFrame({"msg_bytes": [8, 1024], "time_us": [30.5, 41.0]})
    meta = environment_metadata(backend="gloo")
    path = save_table(frame, tmp_path / f"r{suffix}", meta)
    loaded, loaded_meta = load_table(path)
    pd.testing.assert_frame_equal(loaded, frame)
    assert loaded_meta["backend"] == "gloo" and loaded_meta["schema_version"] == 1


def test_failed_write_leaves_no_file(tmp_path):
    """A writer that has already put bytes on disk when it fails: neither the file nor its temp remains."""
    from commbench.results import atomic_write

    def half_then_fail(p):
        p.write_text("msg_bytes,time_us\n8,")  # a torn row: what a crash mid-write leaves
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "r.csv", half_then_fail)
    assert list(tmp_path.iterdir()) == []
    bad = pd.DataFrame({"x": [object()]})
    with pytest.raises(CommbenchError, match=r"unknown output format '.txt'"):
        save_table(bad, tmp_path / "r.txt", {})


def test_written_files_follow_the_umask(tmp_path):
    """Results are for colleagues too: mode 0666 less the umask, not mkstemp's 0600."""
    import os

    old = os.umask(0o022)
    try:
        save_table(pd.DataFrame({"x": [1]}), tmp_path / "r.csv", {})
    finally:
        os.umask(old)
    assert (tmp_path / "r.csv").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "r.csv.meta.json").stat().st_mode & 0o777 == 0o644


def test_csv_round_trips_raw_samples(tmp_path):
    """Raw samples are JSON arrays in a CSV: they read back as the same numbers."""
    import numpy as np

    from commbench.results import load_table

    frame = pd.DataFrame({"msg_bytes": [8, 16], "samples_us": [[np.float64(329.7), 1.5], [2.25, np.float32(3.5)]]})
    save_table(frame, tmp_path / "s.csv", {})
    assert '"[329.7, 1.5]"' in (tmp_path / "s.csv").read_text()
    back, _ = load_table(tmp_path / "s.csv")
    assert back.samples_us.tolist() == [[329.7, 1.5], [2.25, 3.5]]


def test_every_json_output_is_strict(cli, tmp_path):
    """Parsers that reject Infinity and NaN read fit, validate, predict and trace --json."""
    import json

    sweep = tmp_path / "s.csv"
    sweep.write_text("collective,msg_bytes,ranks,time_us_p50\n" + "".join(
        f"all_reduce,{s},2,{10 + s / 1e3}\n" for s in (8, 1024, 65536, 1048576)))

    def strict(text):
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))

    for args in (("fabric", "fit", sweep, "--json"), ("fabric", "validate", "--expect", "1gbit", "--sweep", sweep, "--json"),
                 ("predict", "gpt-oss-120b", "--batch", "1", "--json"), ("trace", "gpt-oss-120b", "--mode", "pp", "--json"),
                 ("explain", "gpt-oss-120b", "--json"), ("accuracy", "--json")):
        result = cli(*args)
        doc = strict(result.output)  # raises on Infinity / NaN
        assert doc["schema_version"] == 1, args
        assert "environment" in doc or args[0] == "accuracy", args
        if args[:2] == ("fabric", "fit"):  # confidence intervals are numbers (or null), never strings
            for row in doc["rows"]:
                for key in ("alpha_ci_lo_us", "alpha_ci_hi_us", "busbw_ci_lo_gbps", "busbw_ci_hi_gbps"):
                    assert row[key] is None or isinstance(row[key], float), (key, row[key])
                assert row["alpha_ci_lo_us"] <= row["alpha_us"] <= row["alpha_ci_hi_us"]


def test_environment_keeps_what_changes_results(monkeypatch):
    from commbench.results import environment_metadata

    monkeypatch.setenv("NCCL_IB_HCA", "rocep1s0f0,roceP2p1s0f0")
    monkeypatch.setenv("OMPI_MCA_btl", "self,sm")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    env = environment_metadata()["env"]
    assert env["NCCL_IB_HCA"] == "rocep1s0f0,roceP2p1s0f0" and env["OMPI_MCA_btl"] == "self,sm"
    assert "OMPI_COMM_WORLD_RANK" not in env
