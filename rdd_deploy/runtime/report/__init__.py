"""`rdd-deploy report`: which file to ship on this host, and why, with its evidence, on one page.

collect.py measures (validate, parity and bench's library functions), recommend.py decides, card.py describes
the model and host, examples.py draws a few predictions, html.py / markdown.py render; report.json holds every
number the pages show.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rdd_deploy.atomic import atomic_write_text
from rdd_deploy.runtime.masks import palette_of
from rdd_deploy.runtime.report.card import model_card
from rdd_deploy.runtime.report.collect import Run, Samples, collect, open_runs
from rdd_deploy.runtime.report.examples import example_strips
from rdd_deploy.runtime.report.html import render_html
from rdd_deploy.runtime.report.markdown import render_markdown
from rdd_deploy.runtime.report.recommend import recommend
from rdd_deploy.runtime.segmenter import Segmenter

FORMATS = ("html", "md")
__all__ = ["FORMATS", "Run", "build_report", "open_runs", "write_report"]


def build_report(reference: Segmenter, reference_name: str, runs: list[Run], samples: Samples, data: str,
                 ignore_index: int | None, input_size: tuple[int, int], warmup: int = 20, iters: int = 200,
                 checkpoint: dict[str, Any] | None = None, examples: int = 4,
                 on_step: Callable[[str], None] = lambda step: None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Measure, decide and describe: (report.json's content, the example strips with their PNG bytes)."""
    report = collect(reference, runs, samples, ignore_index, input_size, warmup, iters, on_step)
    report["reference"] = reference_name
    report["recommendation"] = recommend(report["runs"])
    chosen = runs[report["recommendation"]["run"] or 0].segmenter
    ignore = chosen.info.ignore_index if ignore_index is None else ignore_index
    on_step("drawing the val images")
    strips = example_strips(chosen, samples(), examples, palette_of(chosen.info), ignore)
    report["examples"] = [{"index": s["index"], "wrong_share": s["wrong_share"]} for s in strips]
    first = runs[0].segmenter
    report["card"] = model_card(first.info, first.engine.metadata, data, report.pop("data_sha256"), report["images"],
                                checkpoint)
    return report, strips


def write_report(report: dict[str, Any], strips: list[dict[str, Any]], out: Path, fmt: str = "html") -> list[Path]:
    """report.json and report.html (fmt html) or report.md (fmt md) in `out`, each written atomically once both
    are rendered, so a failure leaves no half of the pair."""
    page = (out / "report.html", render_html(report, strips)) if fmt == "html" else (out / "report.md",
                                                                                     render_markdown(report))
    return [atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n"), atomic_write_text(*page)]
