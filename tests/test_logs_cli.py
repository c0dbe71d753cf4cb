"""The log readers through the commands: bad input is one line, exit 2 and nothing written; --run,
--collective, --ranks and --partial reach the reader; report --sweep says where a log came from;
scripts/check_tool_outputs.py reads a folder without a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

LOGS = Path(__file__).parent / "fixtures" / "logs"
ROOT = Path(__file__).parent.parent
CONCAT = (LOGS / "nccltests_three_runs_concat.log").read_bytes()


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (bytes(range(256)) * 4, "not text"),
    (b"just some text\n", "unknown format"),
    (CONCAT[:CONCAT.index(b"   536870912")], "footer"),  # cut after run 1's second row
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(cli, tmp_path, content, message):
    log = tmp_path / "in.log"
    log.write_bytes(content)
    out = tmp_path / "fab.toml"
    result = cli("fabric", "fit", log, "--out", out)
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_fit_takes_run_collective_and_ranks(cli):
    import json

    log = LOGS / "nccltests_three_runs_concat.log"
    by_run = json.loads(cli("fabric", "fit", log, "--run", "2", "--json").output)["rows"]
    assert {r["collective"] for r in by_run} == {"all_gather"}
    by_name = json.loads(cli("fabric", "fit", log, "--collective", "all_gather", "--json").output)["rows"]
    assert by_name == by_run
    everything = json.loads(cli("fabric", "fit", log, "--json").output)["rows"]  # one run per collective: all
    assert {r["collective"] for r in everything} == {"all_reduce", "all_gather", "send_recv_bidir"}
    refused = cli("fabric", "fit", LOGS / "nccltests_rank_lines_elided.txt")
    assert refused.exit_code == 2 and "--ranks N" in refused.output
    assert cli("fabric", "fit", LOGS / "nccltests_rank_lines_elided.txt", "--ranks", "8", "--json").exit_code == 0
    partial = cli("fabric", "fit", LOGS / "nccltests_partial_paste_sendrecv.md", "--partial", "--json")
    assert partial.exit_code == 0


def test_validate_spells_the_log_options_apart_from_its_own(cli):
    log = LOGS / "nccltests_rank_lines_elided.txt"
    refused = cli("fabric", "validate", "--expect", "200gbe", "--sweep", log)
    assert refused.exit_code == 2 and "--log-ranks N" in refused.output
    judged = cli("fabric", "validate", "--expect", "200gbe", "--sweep", log, "--log-ranks", "8")
    assert judged.exit_code in (0, 1) and "8 ranks" in judged.output


def test_an_assumption_is_printed_by_the_command(cli):
    result = cli("fabric", "fit", LOGS / "osu_alltoall_no_rank_count.txt", "--json")
    assert "note: read OSU all_to_all log" in result.output and "read as 2 ranks" in result.output


def test_report_of_a_log_says_where_it_came_from(cli, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "rep"
    result = cli("report", "--sweep", LOGS / "nccltests_scraped_blanks_collapsed.txt", "--out", out)
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    assert "read from a nccl-tests log" in text and "version 2.17.6" in text and "gke-pool-0, gke-pool-1" in text
    assert "measured by `commbench sweep`" not in text and "on host ?" not in text


def test_check_tool_outputs_reads_a_folder_without_a_traceback(tmp_path):
    for name in ("nccltests_three_runs_concat.log", "osu_bw.txt", "nccltests_rank_lines_elided.txt"):
        (tmp_path / name).write_bytes((LOGS / name).read_bytes())
    (tmp_path / "garbage.bin").write_bytes(bytes(range(256)))
    (tmp_path / "empty.txt").write_text("")
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_tool_outputs.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "Traceback" not in run.stderr + run.stdout
    rows = [line.split("\t") for line in run.stdout.strip().splitlines()[1:]]
    assert len(rows) == 3 + 1 + 1 + 1 + 1  # three runs, osu_bw, elided (refused), garbage, empty
    by_file = {r[0]: r for r in rows}
    assert by_file["nccltests_three_runs_concat.log [2/3]"][2] == "all_gather"
    assert by_file["osu_bw.txt"][5] == "12000.00 MB/s"
    assert by_file["garbage.bin"][1] == "REFUSED" and by_file["empty.txt"][1] == "REFUSED"
    assert "--ranks N" in by_file["nccltests_rank_lines_elided.txt"][6]
