"""``evaluation.html``: one offline page of tables and plots (PNG embedded as data URIs).

Plots (matplotlib, Agg): per-subject Dice / lesion F1 of each segmentation marker, FROC curves,
Bland-Altman plots of volumes and counts, confusion matrices of the grades and the total score.
Tables: the summary's headline numbers, per-region detection, the subjects with the worst
results linked to their ``report.html``, and every subject that was missing something.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import math
import os
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from csvdnet.fsutil import write_text_atomic

__all__ = ["write_html"]

_CSS = """body{font-family:system-ui,sans-serif;margin:24px;max-width:1300px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
td:last-child a{margin-right:4px}
.figs img{border:1px solid #ddd;max-width:100%;height:auto}.worst td{text-align:left}
.warn{background:#fff4e0;border:1px solid #f0b040;padding:8px}.note{color:#555;font-size:.85em}"""


def _panel(draws: Sequence[Callable[[Any], None]], size: tuple[float, float] = (3.6, 3.0),
           per_row: int = 4) -> str:
    """One PNG of subplots, ``draw(ax)`` each (one figure per section: a figure costs more
    than a subplot to render)."""
    import matplotlib.pyplot as plt

    n_rows = -(-len(draws) // per_row)
    n_cols = min(len(draws), per_row)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size[0] * n_cols, size[1] * n_rows),
                             squeeze=False)
    # Fixed spacing: a layout engine would double the rendering time.
    fig.subplots_adjust(left=0.8 / fig.get_figwidth(), right=1 - 0.15 / fig.get_figwidth(),
                        bottom=0.6 / fig.get_figheight(), top=1 - 0.35 / fig.get_figheight(),
                        wspace=0.45, hspace=0.55)
    for ax, draw in zip(axes.ravel(), draws):
        draw(ax)
    for ax in axes.ravel()[len(draws):]:
        ax.set_axis_off()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _ci(entry: Mapping[str, Any]) -> str:
    return (f"{_fmt(entry.get('value'))} [{_fmt(entry.get('ci_low'))}, "
            f"{_fmt(entry.get('ci_high'))}]")


def _spread(stats: Mapping[str, Any], digits: int = 3) -> str:
    """Median [quartiles] (n), the VALDO way."""
    return (f"{_fmt(stats.get('median'), digits)} [{_fmt(stats.get('q1'), digits)}-"
            f"{_fmt(stats.get('q3'), digits)}] ({stats.get('n')})")


def _mean(stats: Mapping[str, Any], digits: int = 3) -> str:
    """Mean [95 % bootstrap interval]."""
    return (f"{_fmt(stats.get('mean'), digits)} [{_fmt(stats.get('mean_ci_low'), digits)}, "
            f"{_fmt(stats.get('mean_ci_high'), digits)}]")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _confusion(ax: Any, title: str, matrix: Sequence[Sequence[int]], labels: Sequence[str],
               axes: tuple[str, str] = ("true", "predicted")) -> None:
    matrix = np.asarray(matrix)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center",
                color="white" if n > matrix.max() / 2 else "black", fontsize=9)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylabel(axes[0])
    ax.set_xlabel(axes[1])
    ax.set_title(title, fontsize=10)


def _bland_altman(ax: Any, title: str, true: Sequence[float], pred: Sequence[float],
                  stats: Mapping[str, Any]) -> None:
    true, pred = np.asarray(true, float), np.asarray(pred, float)
    ax.scatter((true + pred) / 2, pred - true, s=14, alpha=0.7)
    for key, style in (("bias", "-"), ("loa_low", "--"), ("loa_high", "--")):
        value = stats.get(key)
        if value is not None and math.isfinite(value):
            ax.axhline(value, color="tab:red", linestyle=style, linewidth=1)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("mean of true and predicted")
    ax.set_ylabel("predicted - true")
    ax.set_title(title, fontsize=10)


def _froc(ax: Any, detection: Mapping[str, Any]) -> None:
    for task, entry in detection.items():
        curve = entry["froc"]
        if curve["fp_per_subject"]:
            ax.plot(curve["fp_per_subject"], curve["sensitivity"], drawstyle="steps-post",
                    marker="o", markersize=3, label=f"{task} (score {_fmt(curve['score'], 2)})")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(0, 16)
    ax.set_ylim(0, 1.02)
    for rate in (1, 2, 4, 8):
        ax.axvline(rate, color="grey", linewidth=0.4)
    ax.set_xlabel("false positives per subject")
    ax.set_ylabel("sensitivity")
    ax.set_title("FROC", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")


def _strip(ax: Any, rows: Sequence[Mapping[str, Any]], tasks: Sequence[str],
           metric: str) -> None:
    for k, task in enumerate(tasks):
        values = [float(v) for r in rows if (v := r.get(f"{task}_{metric}")) is not None
                  and math.isfinite(float(v))]
        if values:
            ax.boxplot(values, positions=[k], widths=0.5, showfliers=False)
            jitter = np.random.default_rng(k).uniform(-0.15, 0.15, len(values))
            ax.scatter(k + jitter, values, s=12, alpha=0.7)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"per-subject {metric.replace('_', ' ')}", fontsize=10)


def _link(report: Path | None, out_dir: Path, text: str) -> str:
    if report is None:
        return html.escape(text)
    href = urllib.parse.quote(Path(os.path.relpath(report, out_dir)).as_posix())
    return f'<a href="{href}">{html.escape(text)}</a>'


def _worst(rows: Sequence[Mapping[str, Any]], reports: Mapping[str, Path | None],
           out_dir: Path, n: int = 5) -> str:
    sections = []
    for key, label, worst_first in (("wmh_dice", "WMH Dice", False),
                                    ("lacune_det_f1", "lacune F1", False),
                                    ("rssi_det_f1", "RSSI F1", False),
                                    ("cmb_det_f1", "CMB F1", False),
                                    ("epvs_det_f1", "EPVS F1", False),
                                    ("total_rule_error", "total score error (rule)", True),
                                    ("total_ordinal_error", "total score error (ordinal)", True)):
        values = [(float(r[key]), r["subject"]) for r in rows
                  if r.get(key) is not None and math.isfinite(float(r[key]))]
        if not values:
            continue
        # Only imperfect subjects: an error other than 0, an overlap / F1 below 1.
        imperfect = [v for v in values if (v[0] != 0 if worst_first else v[0] < 1)]
        order = sorted(imperfect, key=lambda v: -abs(v[0]) if worst_first else v[0])[:n]
        cells = ", ".join(f"{_link(reports.get(s), out_dir, s)} ({_fmt(v, 2)})"
                          for v, s in order) or "none: every subject is perfect"
        sections.append([html.escape(label), cells])
    table = _table(["metric", "worst subjects (value), linked to their report"], sections)
    return f'<div class="worst">{table}</div>'


def write_html(path: Path, rows: list[dict[str, Any]], summary: Mapping[str, Any],
               evals: Sequence[Any], reports: Mapping[str, Path | None]) -> None:
    """Write ``evaluation.html`` (module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir = path.parent
    subjects = summary["subjects"]
    predictions, cohort = html.escape(summary["predictions"]), html.escape(summary["cohort"])
    parts = [f"<h1>csvdnet evaluation</h1><p>Predictions <code>{predictions}</code> "
             f"({summary['layout']}) against <code>{cohort}</code>: "
             f"{subjects['evaluated']} of {subjects['cohort']} subjects evaluated. "
             f"csvdnet {summary['csvdnet_version']}, {summary['created']}.</p>"]
    if subjects["missing_prediction"] or subjects["problems"]:
        items = "".join(f"<li><b>{html.escape(s)}</b>: {html.escape('; '.join(p))}</li>"
                        for s, p in subjects["problems"].items())
        parts.append(f'<div class="warn"><b>Missing or unusable</b> (these subjects or parts '
                     f"are not in the figures):<ul>{items}</ul></div>")
    segmentation = summary["segmentation"]
    if segmentation:
        table = [[t, str(e["n_subjects"]), _ci(e["pooled_dice"]),
                  _spread(e["per_subject"]["dice"]), _mean(e["per_subject"]["dice"]),
                  _spread(e["per_subject"]["hd95_mm"], 1), _spread(e["per_subject"]["avd_pct"], 1),
                  _spread(e["per_subject"]["lesion_f1"]), _ci(e["pooled_lesions"]["f1"])]
                 for t, e in segmentation.items()]
        parts += ["<h2>Segmentation (WMH challenge definitions)</h2>",
                  _table(["marker", "subjects", "pooled Dice [95% CI]", "Dice median [IQR] (n)",
                          "Dice mean [95% CI]", "HD95 mm median [IQR] (n)",
                          "AVD % median [IQR] (n)", "lesion F1 median [IQR] (n)",
                          "pooled lesion F1 [95% CI]"], table),
                  '<p class="note">(n): subjects where the value is defined (HD95 needs both '
                  "masks non-empty, AVD a non-empty reference).</p>",
                  '<div class="figs">']
        draws = [functools.partial(_strip, rows=rows, tasks=list(segmentation), metric=m)
                 for m in ("dice", "lesion_f1")]
        for task, entry in segmentation.items():
            true = [r[f"{task}_volume_true_ml"] for r in rows if f"{task}_dice" in r]
            pred = [r[f"{task}_volume_pred_ml"] for r in rows if f"{task}_dice" in r]
            draws.append(functools.partial(_bland_altman, title=f"{task} volume (ml)", true=true,
                                           pred=pred, stats=entry["volume_ml"]))
        parts += [_panel(draws, per_row=4), "</div>"]
    detection = summary["detection"]
    if detection:
        table = [[t, _fmt(e["radius_mm"], 1), str(e["pooled"]["tp"]), str(e["pooled"]["fp"]),
                  str(e["pooled"]["fn"]), _fmt(e["pooled"]["sensitivity"]),
                  _fmt(e["pooled"]["precision"]), _ci(e["pooled"]["f1"]),
                  _spread(e["per_subject"]["f1"]),
                  _fmt(e["false_positives_per_subject"]["mean"], 2),
                  " / ".join(_fmt(v, 2) for v in e["froc"]["at"].values())]
                 for t, e in detection.items()]
        parts += ["<h2>Detection (VALDO-style matching)</h2>",
                  _table(["marker", "radius mm", "TP", "FP", "FN", "sensitivity", "precision",
                          "pooled F1 [95% CI]", "F1 median [IQR] (n)", "FP / subject",
                          "FROC sens. at 1/2/4/8 FP"], table)]
        region_rows = [[t, g, f"{r['found']}/{r['true']} = {_fmt(r['sensitivity'], 2)}",
                        f"{r['hits']}/{r['predicted']} = {_fmt(r['precision'], 2)}"]
                       for t, e in detection.items() for g, r in e["regions"].items()]
        parts += ["<h3>By region</h3>",
                  _table(["marker", "region", "sensitivity", "precision"], region_rows),
                  '<div class="figs">']
        draws = [functools.partial(_froc, detection=detection)]
        for task, entry in detection.items():
            counts = [(ev.matchings[task].counts.n_true, ev.matchings[task].counts.n_pred)
                      for ev in evals if task in ev.matchings]
            draws.append(functools.partial(
                _bland_altman, title=f"{task} count (labels)", true=[c[0] for c in counts],
                pred=[c[1] for c in counts], stats=entry["count"]))
        parts += [_panel(draws, per_row=4), "</div>"]
    counts = summary["counts"]
    if counts:
        table = [[name, str(e["n"]), _fmt(e["mean_error"], 2), _fmt(e["mean_absolute_error"], 2),
                  f"{_fmt(e['bias'], 2)} [{_fmt(e['loa_low'], 2)}, {_fmt(e['loa_high'], 2)}]",
                  _fmt(e["icc_a1"]), _fmt(e["spearman"])] for name, e in counts.items()]
        parts += ["<h2>Counts against ratings.csv</h2>",
                  _table(["count", "n", "mean error", "MAE", "bias [limits of agreement]",
                          "ICC(A,1)", "Spearman"], table)]
    figures = []
    ordinal_rows = []
    for section, names in (("grades", summary["grades"]), ("total_score", summary["total_score"]),
                           ("staals_components", summary["staals_components"])):
        for name, e in names.items():
            ordinal_rows.append([f"{section.replace('_', ' ')}: {name.replace('_', ' ')}",
                                 str(e["n"]), _fmt(e["accuracy"]), _fmt(e["within_one"]),
                                 _fmt(e["mean_absolute_error"], 2),
                                 f"{_fmt(e['kappa_quadratic'])} [{_fmt(e['kappa_quadratic_ci'][0])}"
                                 f", {_fmt(e['kappa_quadratic_ci'][1])}]"])
            if section != "staals_components":
                labels = [str(k) for k in range(len(e["confusion"]))]
                title = name.replace("_", " ")
                axes = ("true", "predicted")
                if section == "total_score":
                    title = f"total score: {title.replace('rule vs ordinal', 'agreement')}"
                    axes = ("rule", "ordinal") if name == "rule_vs_ordinal" else ("true", name)
                figures.append(functools.partial(_confusion, title=title,
                                                 matrix=e["confusion"], labels=labels, axes=axes))
    if ordinal_rows:
        parts += ["<h2>Grades and total SVD score</h2>",
                  _table(["quantity", "n", "accuracy", "within one", "MAE",
                          "quadratic kappa [CI]"], ordinal_rows),
                  '<p class="note">total score: rule = Staals 2014 over the predicted markers; '
                  "ordinal = the network's score head; rule vs ordinal = their agreement "
                  "(rule as rows).</p>", '<div class="figs">',
                  _panel(figures, size=(3.0, 2.9), per_row=6) if figures else "", "</div>"]
    parts += ["<h2>Worst subjects</h2>", _worst(rows, reports, out_dir),
              "<h2>Definitions</h2><ul>"
              + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
                        for k, v in summary["definitions"].items()) + "</ul>",
              '<p class="note">Per-subject values: metrics_per_subject.tsv; everything above '
              "with more digits: summary.json.</p>"]
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>csvdnet evaluation</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")
    write_text_atomic(path, page)
