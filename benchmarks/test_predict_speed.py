"""The full predict grid: every shipped model x 2 modes x 8 batches x 3 scenarios (target: under 0.5 s; 0.46 s median measured on the 2-vCPU dev host)."""

from commbench.predict.grid import predict_grid
from commbench.fabric import load_fabric
from commbench.predict.hardware import load_hardware
from commbench.traffic.model_card import shipped_models
from commbench.traffic.workload import SCENARIOS

BATCHES = [1, 2, 4, 8, 16, 32, 64, 128]


def test_full_grid(benchmark):
    hw = load_hardware("dgx-spark")
    fabric = load_fabric(hw.fabric)
    frame = benchmark(predict_grid, shipped_models(), hw, fabric, ["tp", "pp"], BATCHES, list(SCENARIOS))
    assert len(frame) == len(shipped_models()) * 2 * len(BATCHES) * len(SCENARIOS)
