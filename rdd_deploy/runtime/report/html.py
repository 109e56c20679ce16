"""The report as one self-contained HTML page: inline CSS, SVG charts and PNG data URIs, no script, no request.

Its Content-Security-Policy forbids every fetch but data: images, so even a future edit that links a font or a
script could not make the page reach the network.
"""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from rdd_deploy.runtime.confusion import confusion_png
from rdd_deploy.runtime.report.charts import bar_chart, number, pointer

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#1b1b1b;padding:0 16px}
h1{font-size:22px;margin-bottom:2px}h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:28px}
.sub{color:#555}.verdict{background:#eef6ee;border:1px solid #7cb87c;border-radius:6px;padding:12px 16px}
.verdict.none{background:#fbeeee;border-color:#d08080}.verdict b.ship{font-size:18px}
table{border-collapse:collapse;margin:8px 0}td,th{border-bottom:1px solid #e4e4e4;padding:3px 9px;text-align:right}
td:first-child,th:first-child{text-align:left}.pass{color:#1d7a1d;font-weight:600}.fail{color:#b01c1c;font-weight:600}
tr.chosen td{background:#f3f9f3}.grid{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px}dt{color:#555}dd{margin:0}
.examples img{display:block;margin:4px 0 12px;max-width:100%}.caption{color:#555;font-size:12px}
"""


def data_uri(png: bytes) -> str:
    """A PNG as a data: URI, so the page carries its own images."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _verdict(report: dict[str, Any]) -> str:
    choice = report["recommendation"]
    lost = "".join(f"<li><b>{escape(o['name'])}</b>: {escape(o['reason'])}</li>" for o in choice["others"])
    head = (f'Ship <b class="ship">{escape(choice["name"])}</b>' if choice["run"] is not None
            else '<b class="ship">Ship none of these files</b>')
    css = "verdict" if choice["run"] is not None else "verdict none"
    return (f'<div class="{css}"><div>{head}: {escape(choice["why"])}.</div>'
            + (f"<div>The others lost:</div><ul>{lost}</ul>" if lost else "") + "</div>")


def _runs_table(report: dict[str, Any]) -> str:
    head = ("<tr><th>run</th><th>precision</th><th>MB</th><th>mIoU %</th><th>boundary mIoU %</th>"
            "<th>agreement %</th><th>mIoU Δ</th>"
            "<th>parity</th><th>p50 ms</th><th>p99 ms</th><th>mean FPS</th><th>engine p50 ms</th></tr>")
    rows = []
    for i, run in enumerate(report["runs"]):
        p, e2e, engine = run["parity"], ("runs", i, "latency", "end_to_end"), ("runs", i, "latency", "engine")
        if p is None:
            parity_cells = "<td>reference</td><td>–</td><td class='pass'>reference</td>"
        else:
            verdict = "<td class='pass'>pass</td>" if p["passed"] else "<td class='fail'>fail</td>"
            parity_cells = (f"<td>{number(p['agreement'], pointer('runs', i, 'parity', 'agreement'), 3)}</td>"
                            f"<td>{number(p['miou_diff'], pointer('runs', i, 'parity', 'miou_diff'))}</td>{verdict}")
        chosen = ' class="chosen"' if i == report["recommendation"]["run"] else ""
        lat = run["latency"]
        rows.append(
            f"<tr{chosen}><td>{escape(run['name'])}</td><td>{escape(run['precision'])}</td>"
            f"<td>{number(run['file_size_mb'], pointer('runs', i, 'file_size_mb'), 1)}</td>"
            f"<td>{number(run['accuracy']['miou'], pointer('runs', i, 'accuracy', 'miou'), 2, 100)}</td>"
            f"<td>{number(run['accuracy']['boundary_miou'], pointer('runs', i, 'accuracy', 'boundary_miou'), 2, 100)}"
            f"</td>{parity_cells}"
            f"<td>{number(lat['end_to_end']['median_ms'], pointer(*e2e, 'median_ms'))}</td>"
            f"<td>{number(lat['end_to_end']['p99_ms'], pointer(*e2e, 'p99_ms'))}</td>"
            f"<td>{number(lat['end_to_end']['fps'], pointer(*e2e, 'fps'), 1)}</td>"
            f"<td>{number(lat['engine']['median_ms'], pointer(*engine, 'median_ms'))}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _card(report: dict[str, Any]) -> str:
    card, host = report["card"], report["card"]["host"]
    cpu = host["cpu"]
    gpus = ", ".join(g["name"] for g in host["gpus"]) or "none"
    items = [("model", card["model_name"]), ("classes", f"{card['num_classes']}: {', '.join(card['class_names'])}"),
             ("input", f"{card['input_size']} {card['input_layout']}, {card['channel_order']}, mean {card['mean']}, "
                       f"std {card['std']}, dynamic: {card['dynamic']}"),
             ("data", f"{card['data']['spec']} ({card['data']['split']}, {card['data']['images']} images), "
                      f"sha256 {card['data']['sha256']}")]
    checkpoint = card["checkpoint"]
    if checkpoint:
        items += [("checkpoint", checkpoint["checkpoint"]), ("architecture", checkpoint["architecture"]),
                  ("trained on", f"{checkpoint['dataset']}, crops {checkpoint['crop_size']}")]
        if checkpoint.get("recipe"):
            recipe = checkpoint["recipe"]
            items += [("recipe", recipe["name"]), ("distillation", recipe["distill"]), ("optimiser", recipe["optim"]),
                      ("teacher", (recipe.get("teacher") or {}).get("checkpoint") or "none")]
    if card["export_metadata"]:
        items.append(("export", card["export_metadata"]))
    items += [("host CPU", f"{cpu.get('model')} ({', '.join(cpu.get('features') or [])})"), ("GPU", gpus),
              ("libraries", f"rdd-deploy {host['rdd_deploy']}, python {host['python']}, numpy {host['numpy']}, "
                            f"onnxruntime {host['onnxruntime']['version']}, openvino {host['openvino']['version']}, "
                            f"tensorrt {host['tensorrt']}, torch {host['torch']}"),
              ("os", host["os"]), ("date", report["created"])]
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(_plain(v))}</dd>" for k, v in items) + "</dl>"


def _plain(value: Any) -> str:
    """A metadata value as people write it: 'name deeplabv3_r18, width_mult 0.4' rather than a Python dict."""
    if isinstance(value, dict):
        return ", ".join(f"{key} {_plain(item)}" for key, item in value.items() if item is not None)
    return str(value)


def render_html(report: dict[str, Any], examples: list[dict[str, Any]]) -> str:
    """The whole page as one string."""
    runs = report["runs"]
    shown = report["recommendation"]["run"] if report["recommendation"]["run"] is not None else 0
    run = runs[shown]
    iou = run["accuracy"]["iou"]
    iou_chart = bar_chart([(name, [(value, pointer("runs", shown, "accuracy", "iou", name))])
                           for name, value in iou.items()], "%", 1, 100, width=500)
    latency_chart = bar_chart([(r["name"], [(r["latency"]["end_to_end"]["median_ms"],
                                             pointer("runs", i, "latency", "end_to_end", "median_ms")),
                                            (r["latency"]["end_to_end"]["p99_ms"],
                                             pointer("runs", i, "latency", "end_to_end", "p99_ms"))])
                               for i, r in enumerate(runs)], "ms", 2, 1, series=("p50", "p99"))
    confusion = run["accuracy"]["confusion"]
    heat_map = data_uri(confusion_png(confusion["counts"], confusion["classes"]))
    settings = runs[0]["latency"]["settings"]
    strips = "".join(
        f'<div class="caption">val image {e["index"]}: photo · labels · prediction · wrong pixels (red, '
        f'{number(e["wrong_share"], pointer("examples", k, "wrong_share"), 1, 100)} % of labelled pixels)</div>'
        f'<img alt="val image {e["index"]}" src="{data_uri(e["png"])}">' for k, e in enumerate(examples))
    title = f"Release report: {report['card']['model_name']}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{escape(title)}</title><style>{STYLE}</style></head><body>
<h1>{escape(title)}</h1>
<div class="sub">{escape(report['card']['data']['spec'])} · {report['images']} val images ·
host {escape(str(report['card']['host']['cpu'].get('model')))} · {escape(report['created'])}</div>
<h2>What to ship on this host</h2>{_verdict(report)}
<h2>Every run: accuracy, parity with the reference ({escape(report['reference'])}), latency</h2>
{_runs_table(report)}
<div class="caption">Latency: median (p50) and p99 end to end, uint8 image to mask, input
{settings['input_size'][0]}x{settings['input_size'][1]}, batch 1, {settings['warmup']} warm-up and
{settings['iters']} timed rounds, runs interleaved. Parity: argmax agreement and mIoU difference against the
reference on the same images, judged at each run's precision.</div>
{latency_chart}
<h2>Accuracy of {escape(run['name'])}</h2>
<div>mIoU {number(run['accuracy']['miou'], pointer('runs', shown, 'accuracy', 'miou'), 2, 100)} %,
pixel accuracy {number(run['accuracy']['pixel_acc'], pointer('runs', shown, 'accuracy', 'pixel_acc'), 2, 100)} %</div>
<div class="grid"><div><h3>IoU per class</h3>{iou_chart}</div>
<div><h3>Confusion matrix</h3><img alt="confusion matrix" src="{heat_map}"></div></div>
<h2>Val images</h2><div class="examples">{strips}</div>
<h2>Model card</h2>{_card(report)}
</body></html>
"""

