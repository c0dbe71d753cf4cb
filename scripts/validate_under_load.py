#!/usr/bin/env python3
"""Does `fabric validate` keep its verdict on a busy host? (issue 14)

Builds the emulated two-host link (scripts/emulated-link.sh, its own namespace prefix), starts a
process that keeps one core busy, and runs `commbench fabric validate` RUNS times against the
shaped rate (expected PASS) and RUNS times against a 4x faster one (expected FAIL), one gloo rank
per namespace. Prints each verdict and the tally; exits 1 unless every verdict is the expected one.
Needs root (network namespaces). Usage: sudo .venv/bin/python scripts/validate_under_load.py [RUNS]
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = f"cbl{os.getpid() % 100000}"
ENV = {**os.environ, "CB_NETNS_PREFIX": PREFIX}
RATE, FASTER = "1gbit", "4gbit"


def _port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def validate(expect: str) -> tuple[int, dict]:
    port, procs = _port(), []
    for rank in (0, 1):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "10.213.7.1", "MASTER_PORT": port,
               "GLOO_SOCKET_IFNAME": f"{PREFIX}-veth{rank}"}
        cmd = ["ip", "netns", "exec", f"{PREFIX}-host{rank}", sys.executable, "-m", "commbench", "fabric", "validate",
               "--expect", expect, "--backend", "gloo", "--max-bytes", "32M", "--json"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT))
    outs = [p.communicate(timeout=900) for p in procs]
    doc = json.loads(outs[0][0]) if outs[0][0].strip() else {"verdict": "ERROR", "error": outs[0][1][-300:]}
    return procs[0].returncode, doc


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    subprocess.run([str(ROOT / "scripts" / "emulated-link.sh"), "up", RATE], check=True, env=ENV, capture_output=True)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # one core kept busy throughout
    tally = {RATE: [], FASTER: []}
    try:
        for expect, wanted in ((RATE, "PASS"), (FASTER, "FAIL")):
            for i in range(runs):
                t0 = time.monotonic()
                code, doc = validate(expect)
                bands = ", ".join(f"{b['band']} {b['status']} ({b['measured']:.4g} vs {b['expected']:.4g})"
                                  for b in doc.get("bands", []) if b.get("measured") is not None)
                print(f"--expect {expect} run {i + 1}: {doc['verdict']} (exit {code}, {time.monotonic() - t0:.0f} s): {bands}",
                      flush=True)
                tally[expect].append(doc["verdict"] == wanted)
    finally:
        busy.kill()
        subprocess.run([str(ROOT / "scripts" / "emulated-link.sh"), "down"], env=ENV, capture_output=True)
    print(f"expected verdicts: --expect {RATE} PASS {sum(tally[RATE])}/{runs}, --expect {FASTER} FAIL "
          f"{sum(tally[FASTER])}/{runs} (one core kept busy by another process)")
    return 0 if all(tally[RATE]) and all(tally[FASTER]) else 1


if __name__ == "__main__":
    sys.exit(main())
