"""The two figures of docs/benchmarks.md, drawn from results that already exist (nothing is trained here).

    python benchmarks/figures.py --latency docs/results/export_latency.json \
        --quickstart runs/quickstart/<run> --out docs/figures

1. miou_vs_latency.png: val mIoU against end-to-end CPU latency for every trained checkpoint of
   export_latency.py, in PyTorch and as ONNX Runtime FP32 / FP16 / INT8.
2. predictions.png: synthetic validation images, their labels, and the predictions of the quickstart's
   teacher and its CE, KD and RDD students.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rdd_deploy.data import build_dataset  # noqa: E402
from rdd_deploy.data.synthetic import CONFUSABLE  # noqa: E402
from rdd_deploy.parity import torch_segmenter  # noqa: E402

MARKERS = {"pytorch": "o", "fp32": "s", "fp16": "^", "int8": "D"}
QUICKSTART_RUNS = ("teacher", "student_ce", "student_kd", "student_rdd")


def miou_vs_latency(results: dict[str, Any], path: Path) -> None:
    """Scatter of (end-to-end ms, val mIoU) per trained model and backend."""
    figure, axes = plt.subplots(figsize=(8.0, 4.2))
    for case in (c for c in results["cases"] if c["trained"]):
        label = f"{Path(case['checkpoint']).parent.name}: {case['model']} ×{case['width_mult']:g}"
        rows = {row["backend"]: row for row in case["rows"]}
        reference_miou = next(row["parity"]["reference_miou"] for row in case["rows"] if "parity" in row)
        points = [("pytorch", rows["pytorch"]["end_to_end"]["mean_ms"], reference_miou)]
        points += [(name, row["end_to_end"]["mean_ms"], row["parity"]["candidate_miou"])
                   for name, row in rows.items() if name != "pytorch"]
        color = axes.plot([p[1] for p in points], [p[2] for p in points], ":", alpha=0.6, label=label)[0].get_color()
        for name, ms, miou in points:
            axes.scatter(ms, miou, marker=MARKERS[name], color=color, s=40)
    for name, marker in MARKERS.items():
        axes.scatter([], [], marker=marker, color="grey", label="PyTorch" if name == "pytorch" else f"ORT {name}")
    size = next(c["input_size"] for c in results["cases"] if c["trained"])
    device = results["device"]
    axes.set(xlabel=f"end-to-end latency per {size[0]}x{size[1]} image, ms", ylabel="val mIoU %",
             title=f"{device['cpu']}, {device['cores']} cores, {results['date']}")
    axes.title.set_fontsize(9)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def swapped_share(segmenter: Any, val: Any) -> float:
    """Share of object pixels predicted as the class that shares the object's shape: what mislabels teach."""
    partner = np.array([CONFUSABLE.get(cls, -1) for cls in range(val.info.num_classes)])
    hits = objects = 0
    for index in range(len(val)):
        image, label = val.raw(index)
        on_object = (label > 0) & (label != val.info.ignore_index)
        hits += int((segmenter.predict(image)[on_object] == partner[label[on_object]]).sum())
        objects += int(on_object.sum())
    return hits / objects


def predictions(run_dir: Path, path: Path, images: int) -> None:
    """Rows of image, label and each quickstart model's prediction, coloured with the data set's palette."""
    # the PyTorch models behind the runtime's own pre- and post-processing, as `rdd-deploy parity` runs them
    summary = json.loads((run_dir / "summary.json").read_text())
    runs = {run["run"]: run for run in summary["runs"]}
    segmenters = {name: torch_segmenter(runs[name]["checkpoint"], device="cpu") for name in QUICKSTART_RUNS}
    val = build_dataset(summary["data"], "val")
    palette = np.array(val.info.palette, dtype=np.uint8)
    columns = ["image", "label", *(f"{name}\n{100 * segmenter.info.torch_miou:.1f} % mIoU, "
                                   f"{100 * swapped_share(segmenter, val):.1f} % swapped"
                                   for name, segmenter in segmenters.items())]
    figure, axes = plt.subplots(images, len(columns), figsize=(1.6 * len(columns), 1.6 * images), squeeze=False)
    for row in range(images):
        image, label = val.raw(row)
        shown = [image, palette[np.where(label == val.info.ignore_index, 0, label)]]
        shown += [palette[segmenter.predict(image)] for segmenter in segmenters.values()]
        for column, picture in enumerate(shown):
            axes[row][column].imshow(picture, interpolation="nearest")
            axes[row][column].axis("off")
            if row == 0:
                axes[row][column].set_title(columns[column], fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def main() -> None:
    """Draw whichever figures their inputs were given for."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=Path, help="export_latency.py's JSON")
    parser.add_argument("--quickstart", type=Path, help="a quickstart run directory")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    if not (args.latency or args.quickstart):
        parser.error("nothing to draw: give --latency and/or --quickstart")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.latency:
        miou_vs_latency(json.loads(args.latency.read_text()), args.out / "miou_vs_latency.png")
        print(args.out / "miou_vs_latency.png")
    if args.quickstart:
        predictions(args.quickstart, args.out / "predictions.png", args.images)
        print(args.out / "predictions.png")


if __name__ == "__main__":
    main()
