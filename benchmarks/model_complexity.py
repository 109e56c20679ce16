"""Parameters and multiply-accumulates of every registered model at a given input size.

Counts with torch.utils.flop_counter on the meta device, so no arithmetic runs and the
teacher at 512x1024 costs a second. FlopCounterMode counts 2 FLOPs per multiply-add;
the table reports GMACs (= FLOPs / 2), the convention of the paper's Table 1.

    python benchmarks/model_complexity.py --input-size 512x1024 --json docs/results/model_complexity.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from rdd_deploy.models import FullResolution, build_model, list_models


def measure(name: str, num_classes: int, height: int, width: int) -> dict[str, float]:
    """Parameters (M) and GMACs of one model (main head, no aux) at 1x3xHxW."""
    with torch.device("meta"):
        model = FullResolution(build_model(name, num_classes, aux_head=False)).eval()
        images = torch.empty(1, 3, height, width)
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(images)
    return {"model": name, "params_m": round(params / 1e6, 2), "gmacs": round(counter.get_total_flops() / 2e9, 1)}


def main() -> None:
    """Print a markdown table and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", default="512x1024")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    height, width = (int(v) for v in args.input_size.split("x"))
    rows = [measure(name, args.num_classes, height, width) for name in list_models()]
    print(f"| model | params (M) | GMACs at {height}x{width} |\n|---|---|---|")
    for row in rows:
        print(f"| `{row['model']}` | {row['params_m']} | {row['gmacs']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"input_size": [height, width], "num_classes": args.num_classes,
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
