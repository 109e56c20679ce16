"""The report as Markdown, for a CI job summary: the decision, every run, and the chosen run's per-class IoU."""

from __future__ import annotations

from typing import Any

from rdd_deploy.runtime.report.charts import formatted


def render_markdown(report: dict[str, Any]) -> str:
    """Markdown text with the same numbers, formatted as on the HTML page."""
    choice = report["recommendation"]
    lines = [f"## Release report: {report['card']['model_name']}", "",
             f"{report['card']['data']['spec']} · {report['images']} val images · host "
             f"{report['card']['host']['cpu'].get('model')} · {report['created']}", ""]
    lines.append(f"**Ship {choice['name']}**: {choice['why']}." if choice["run"] is not None
                 else f"**Ship none of these files**: {choice['why']}.")
    lines += [""] + [f"- {other['name']}: {other['reason']}" for other in choice["others"]] + [""]
    lines += [f"Parity reference: {report['reference']}", "",
              "| run | precision | MB | mIoU % | boundary mIoU % | agreement % | mIoU Δ | parity | p50 ms | p99 ms "
              "| mean FPS |", "|---|---|--:|--:|--:|--:|--:|---|--:|--:|--:|"]
    for run in report["runs"]:
        parity, e2e = run["parity"], run["latency"]["end_to_end"]
        verdict = "reference" if parity is None else ("pass" if parity["passed"] else "**fail**")
        agreement = "–" if parity is None else formatted(parity["agreement"], 3)
        diff = "–" if parity is None else formatted(parity["miou_diff"])
        lines.append(f"| {run['name']} | {run['precision']} | {formatted(run['file_size_mb'], 1)} | "
                     f"{formatted(run['accuracy']['miou'], 2, 100)} | "
                     f"{formatted(run['accuracy']['boundary_miou'], 2, 100)} | {agreement} | {diff} | {verdict} | "
                     f"{formatted(e2e['median_ms'])} | {formatted(e2e['p99_ms'])} | {formatted(e2e['fps'], 1)} |")
    shown = report["runs"][choice["run"] if choice["run"] is not None else 0]
    lines += ["", f"IoU per class of {shown['name']}:", "", "| class | IoU % |", "|---|--:|"]
    lines += [f"| {name} | {formatted(value, 2, 100)} |" for name, value in shown["accuracy"]["iou"].items()]
    return "\n".join(lines) + "\n"
