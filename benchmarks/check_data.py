"""`check-data` throughput against plain PIL decoding of the same files, side by side in one run.

Writes a folder data set of Cityscapes-sized pairs (a 2048x1024 RGB PNG photo made of two synthetic renderings,
and its 8-bit class-index PNG mask), then times, in alternating rounds, (a) decoding every image and mask with
PIL into numpy arrays, one file after another, and (b) `check-data` on the same set (decode, label mapping,
statistics, duplicate hashes; files read in parallel). The ratio (b)/(a) in pairs per second is the figure to
compare across machines.

    python benchmarks/check_data.py --json docs/results/check_data.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from host import device_info
from PIL import Image

from rdd_deploy.data.check import check
from rdd_deploy.data.synthetic import NAMES, render


def write_set(root: Path, pairs: int, height: int, width: int) -> Path:
    """`pairs` pairs split 3:1 into train and val, with dataset.yaml."""
    for index in range(pairs):
        split = "val" if index % 4 == 3 else "train"
        halves = [render(0, "val", 2 * index + k, height) for k in range(2)]
        image = np.concatenate([h[0] for h in halves], axis=1)[:, :width]
        label = np.concatenate([h[1] for h in halves], axis=1)[:, :width]
        for folder, pixels in (("images", image), ("masks", label.astype(np.uint8))):
            (root / folder / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / folder / split / f"{index:04d}.png")
    (root / "dataset.yaml").write_text(yaml.safe_dump({"names": list(NAMES)}))
    return root


def decode_only(root: Path) -> int:
    """Decode every image (as RGB) and mask of the set with PIL, serially; returns the number of pairs."""
    count = 0
    for image in sorted(root.glob("images/*/*.png")):
        with Image.open(image) as photo:
            np.asarray(photo.convert("RGB"))
        with Image.open(root / "masks" / image.parent.name / image.name) as mask:
            np.asarray(mask)
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--size", default="1024x2048", help="HxW of every image (Cityscapes: 1024x2048)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="check-data's readers (default: CPU cores)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        root = write_set(Path(folder) / "set", args.pairs, height, width)
        times: dict[str, list[float]] = {"decode_only": [], "check_data": []}
        problems = None
        for _ in range(args.rounds):
            start = time.perf_counter()
            assert decode_only(root) == args.pairs
            times["decode_only"].append(time.perf_counter() - start)
            start = time.perf_counter()
            problems = check(f"folder:{root}", args.workers)["problems"]
            times["check_data"].append(time.perf_counter() - start)
    rates = {name: args.pairs / statistics.median(values) for name, values in times.items()}
    report: dict[str, Any] = {
        "device": device_info(), "pairs": args.pairs, "size": args.size, "rounds": args.rounds,
        "workers": args.workers, "problems": problems, "seconds": times,
        "pairs_per_s": {name: round(rate, 3) for name, rate in rates.items()},
        "check_vs_decode": round(rates["check_data"] / rates["decode_only"], 3)}
    print(json.dumps({k: v for k, v in report.items() if k != "device"}, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
