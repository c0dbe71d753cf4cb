"""Two emulated hosts joined by a 1 Gbit/s tbf-shaped veth pair (scripts/emulated-link.sh).

One gloo rank per network namespace joins through RANK / WORLD_SIZE / MASTER_ADDR like torchrun
ranks on two machines, with GLOO_SOCKET_IFNAME naming the veth end. Skipped where namespaces
cannot be made (no CAP_NET_ADMIN or no iproute2).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid

import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.netns
SCRIPT = ROOT / "scripts" / "emulated-link.sh"
SHAPED_GBPS = 1e9 / 8 / 1e9  # 1 Gbit/s in GB/s
PREFIX = f"cbt{os.getpid() % 100000}"  # this test run's own namespaces, never a user's cb-host0/1
SCRIPT_ENV = {**os.environ, "CB_NETNS_PREFIX": PREFIX}


def _can_make_namespaces() -> bool:
    if shutil.which("ip") is None or shutil.which("tc") is None or os.geteuid() != 0:
        return False
    name = f"cb-probe-{uuid.uuid4().hex[:6]}"
    ok = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ok


@pytest.fixture(scope="module")
def shaped_link():
    if not _can_make_namespaces():
        pytest.skip("cannot create network namespaces here (needs root/CAP_NET_ADMIN and iproute2)")
    subprocess.run([str(SCRIPT), "up", "1gbit"], check=True, capture_output=True, env=SCRIPT_ENV)
    yield
    subprocess.run([str(SCRIPT), "down"], check=True, capture_output=True, env=SCRIPT_ENV)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _validate_on_two_hosts(*args: str):
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "10.213.7.1", "MASTER_PORT": port,
               "GLOO_SOCKET_IFNAME": f"{PREFIX}-veth{rank}"}
        cmd = ["ip", "netns", "exec", f"{PREFIX}-host{rank}", sys.executable, "-m", "commbench", "fabric", "validate",
               "--backend", "gloo", "--min-bytes", "8", "--max-bytes", "32M", "--iters", "6", "--timeout", "30",
               "--json", *args]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    return procs[0].returncode, json.loads(outs[0][0]), outs


def test_validate_passes_against_the_shaped_rate(shaped_link):
    code, doc, outs = _validate_on_two_hosts("--expect", "1gbit")
    assert code == 0, outs[0][1]
    assert doc["verdict"] == "PASS"
    big = [r for r in doc["rows"] if r["msg_bytes"] >= 4 * 2**20]  # far above the 256 KiB tbf burst
    assert len(big) == 4 and all(r["wrong"] == 0 for r in big)
    # the bandwidth band's median over 4 to 32 MiB (p50 of each size): one noisy size on a
    # busy 2-vCPU machine must not decide, the band must
    band = next(b for b in doc["bands"] if b["band"] == "bandwidth-bound")
    assert band["measured"] == pytest.approx(float(np.median([r["busbw_gbps"] for r in big])))
    assert band["measured"] == pytest.approx(SHAPED_GBPS, rel=0.05)


def test_validate_fails_a_faster_expectation_with_a_diagnosis(shaped_link):
    code, doc, _ = _validate_on_two_hosts("--expect", "4gbit")
    assert code == 1
    assert doc["verdict"] == "FAIL"
    band = next(b for b in doc["bands"] if b["band"] == "bandwidth-bound")
    assert band["status"] == "FAIL"
    assert "1 GbE" in band["diagnosis"] and "GLOO_SOCKET_IFNAME" in band["diagnosis"]


def test_a_failed_up_leaves_no_namespace(shaped_link):
    """`up` with a rate tc refuses: the script fails and removes the namespaces it had made."""
    env = {**os.environ, "CB_NETNS_PREFIX": f"cbf{os.getpid() % 100000}"}
    proc = subprocess.run([str(SCRIPT), "up", "not-a-rate"], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "removed what was built" in proc.stderr
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert env["CB_NETNS_PREFIX"] not in listed
