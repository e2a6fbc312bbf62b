"""The HTML page of a subject's report: one offline file a radiologist reads and checks.

Everything is inline (CSS, PNG pictures as data URIs): no fonts, scripts or links leave the
file, so it opens on an air-gapped reading station and can be archived as it is. Numbers come
from the ``report.json`` dict (one source for both files); pictures from the arrays of the
:class:`~csvdnet.inference.result.SubjectResult`. Elements carry ``data-*`` attributes with the
raw values, so tests (and scripts) can read the page without scraping text.
"""

from __future__ import annotations

import datetime
import html
from typing import Any

import numpy as np

from csvdnet import DEFAULT_SEQUENCES
from csvdnet.inference import report_pictures as pictures
from csvdnet.inference.agreement import head_contradicts
from csvdnet.inference.result import SubjectResult
from csvdnet.slices import MARKER_COLOURS, slice_levels

__all__ = ["render_html"]

MARKER_TITLES = {"wmh": "White matter hyperintensities (WMH)",
                 "rssi": "Recent small subcortical infarcts (RSSI)", "lacune": "Lacunes",
                 "cmb": "Cerebral microbleeds (CMB)", "epvs": "Enlarged perivascular spaces (EPVS)"}
RULE_SET_TITLES = {"staals-2014": "Total SVD score (Staals 2014)",
                   "caa-svd-2016": "CAA-SVD score (Charidimou 2016)"}
SIDE_TITLES = {"R": "right", "L": "left", "M": "midline"}
REVIEW_MARK = "<!--csvdnet-review-->"
"""Where ``csvdnet review`` puts the reviewed state beside the model's (csvdnet/review/page.py)."""

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;
 background:#f4f5f7;color:#1d2330;font-size:14px}
main{max-width:1320px;margin:0 auto;padding:16px 24px 40px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 8px;border-bottom:2px solid #d5d9e0;
 padding-bottom:3px}h3{font-size:15px;margin:14px 0 6px}
.meta{color:#4a5366;font-size:13px}.meta code{font-size:12px}
.banner{padding:10px 14px;border-radius:6px;margin:10px 0;font-weight:600}
.disagree{background:#fff1d6;border:1px solid #e0a526;color:#6b4700}
.research{background:#fde2e2;border:1px solid #d64545;color:#7a1212}
.flags{background:#eef1f6;border:1px solid #c3cad6;padding:8px 14px 8px 30px;border-radius:6px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #d5d9e0;border-radius:8px;padding:10px 14px;min-width:250px;
 flex:1}
.card .total{font-size:30px;font-weight:700}.card .max{color:#6a7385;font-size:16px}
.card ul{margin:6px 0 0 0;padding-left:18px}.note{color:#6a7385;font-size:12px}
.bars td{padding:1px 6px}.bar{height:12px;background:#4a78c2;border-radius:2px}
.bars tr.predicted td{font-weight:700}.bars .track{width:180px;background:#e6e9ef;border-radius:2px}
table.data{border-collapse:collapse;background:#fff;margin:4px 0 8px}
table.data th,table.data td{border:1px solid #d5d9e0;padding:3px 9px;text-align:right}
table.data th:first-child,table.data td:first-child{text-align:left}
table.data th{background:#eef1f6}
.markers{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:14px}
.marker{background:#fff;border:1px solid #d5d9e0;border-radius:8px;padding:8px 14px}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;
 vertical-align:-1px}
.ring{border-radius:50%;background:none!important;border:2px solid}
table.pics{border-collapse:collapse;background:#000}
table.pics td,table.pics th{padding:1px;color:#fff;font-weight:600;text-align:center;font-size:12px}
table.pics th.level{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:400}
table.pics img{display:block;image-rendering:pixelated}
.legend span{margin-right:16px;white-space:nowrap}
details summary{cursor:pointer;color:#2d5aa8}
"""


def render_html(result: SubjectResult, report: dict[str, Any]) -> str:
    """The report page of one subject.

    Args:
        result: The subject's prediction (pictures are made from its arrays).
        report: Its :func:`csvdnet.inference.report.report_dict` (every number shown).

    Returns:
        The HTML document.
    """
    canvas = pictures.Canvas.of(result)
    body = [_header(report), _scores(report), REVIEW_MARK, _measurements(report),
            _markers(report), _montage(result, canvas), _qc(result, canvas),
            _dicom_source(report), _about(report)]
    title = html.escape(f"csvdnet report: {report['subject']}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{title}</title><style>{_CSS}</style></head>\n<body><main>\n"
            + "\n".join(body) + "\n</main></body></html>\n")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 2) -> str:
    """A number for the reader: ``—`` for not measured, fixed decimals for floats."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _header(report: dict[str, Any]) -> str:
    model = report["model"]
    created = datetime.datetime.fromisoformat(report["created"])
    parts = [f'<header><h1 data-subject="{_e(report["subject"])}">Subject {_e(report["subject"])}'
             "</h1>",
             f'<div class="meta">Model <b>{_e(model["id"])}</b> ({_e(model["kind"])}, sha256 '
             f'<code>{_e(model["sha256"][:12])}…</code>) · csvdnet {_e(report["csvdnet_version"])}'
             f' · {created:%Y-%m-%d %H:%M} UTC · reference {_e(report["inputs"]["reference"])}'
             f' · sequences {_e(", ".join(report["inputs"]["sequences"]))}</div>']
    if model.get("edited"):
        parts.append('<div class="banner disagree" data-edited-model="1">Edited model: '
                     f'{_e(model["edited"])}. These results are not those of the model as '
                     "exported.</div>")
    if "synth" in model["id"].lower():
        parts.append('<div class="banner research" data-research-only="1">Model trained on '
                     "synthetic data: for research and testing only, not for clinical use."
                     "</div>")
    staals = report["scores"].get("staals-2014", {}).get("total")
    if head_contradicts(report["agreement"], report["ordinal"]["class_probabilities"], staals):
        parts.append(f'<div class="banner disagree" data-disagreement="1">The ordinal head '
                     f'scores {report["ordinal"]["total"]}, the rules score {_fmt(staals)} '
                     "(Staals 2014): check the findings below.</div>")
    if report["flags"]:
        items = "".join(f"<li>{_e(flag)}</li>" for flag in report["flags"])
        parts.append(f'<ul class="flags" data-flags="{len(report["flags"])}">{items}</ul>')
    return "\n".join(parts) + "</header>"


def _scores(report: dict[str, Any]) -> str:
    cards = []
    for name, score in report["scores"].items():
        points = "".join(f"<li>{_e(item.replace('_', ' '))}: <b>{value}</b></li>"
                         for item, value in score["points"].items())
        undecided = score.get("undecided", [])
        points += "".join(f'<li class="undecided" data-undecided="{_e(item)}">'
                          f"{_e(item.replace('_', ' '))}: <b>—</b> not decided</li>"
                          for item in undecided)
        if undecided:  # what the decided points already give: a reader can still use it
            points += (f'<li class="undecided">at least <b>{sum(score["points"].values())}'
                       "</b> whatever the undecided items</li>")
        notes = "".join(f'<div class="note">{_e(note)}</div>' for note in score["notes"])
        cards.append(
            f'<div class="card score" data-rule-set="{_e(name)}" data-total="{_fmt(score["total"])}">'
            f'<div>{_e(RULE_SET_TITLES.get(name, name))} <span class="note">v{_e(score["version"])}'
            f'</span></div><span class="total">{_fmt(score["total"])}</span>'
            f'<span class="max"> / {score["maximum"]}</span><ul>{points}</ul>{notes}</div>')
    ordinal = report["ordinal"]
    rows = "".join(
        f'<tr class="{"predicted" if k == ordinal["total"] else ""}" data-class="{k}" '
        f'data-probability="{p:.4f}"><td>{k}</td><td class="track"><div class="bar" '
        f'style="width:{100 * p:.1f}%"></div></td><td>{p:.2f}</td></tr>'
        for k, p in enumerate(ordinal["class_probabilities"]))
    cards.append(f'<div class="card ordinal" data-total="{ordinal["total"]}"><div>Ordinal head '
                 f'(whole-brain network score)</div><span class="total">{ordinal["total"]}</span>'
                 f'<span class="max"> / {len(ordinal["class_probabilities"]) - 1}</span>'
                 f'<table class="bars">{rows}</table><div class="note">probability of each '
                 "total score</div></div>")
    return '<section><h2>Scores</h2><div class="cards">' + "".join(cards) + "</div></section>"


def _measurements(report: dict[str, Any]) -> str:
    m = report["measurements"]
    rows = [("Fazekas periventricular / deep", f"{_fmt(m['fazekas_pv'])} / "
             f"{_fmt(m['fazekas_deep'])}"),
            ("WMH volume total / periventricular / deep (ml)",
             " / ".join(_fmt(m[k]) for k in ("wmh_volume_ml", "wmh_periventricular_ml",
                                             "wmh_deep_ml"))),
            ("EPVS basal ganglia: count (grade)",
             f"{_fmt(m['epvs_bg_count'])} ({_fmt(m['epvs_bg_grade'])})"),
            ("EPVS centrum semiovale: count (grade)",
             f"{_fmt(m['epvs_cso_count'])} ({_fmt(m['epvs_cso_grade'])})"),
            ("Microbleeds lobar / deep / infratentorial (total)",
             f"{_fmt(m['cmb_lobar'])} / {_fmt(m['cmb_deep'])} / {_fmt(m['cmb_infratentorial'])}"
             f" ({_fmt(m['cmb_count'])})"),
            ("Lacunes: count, volume (ml)", f"{_fmt(m['lacune_count'])}, "
             f"{_fmt(m['lacune_volume_ml'], 3)}"),
            ("RSSI: count, volume (ml) — not part of any total score",
             f"{_fmt(m['rssi_count'])}, {_fmt(m['rssi_volume_ml'], 3)}")]
    body = "".join(f"<tr><td>{_e(label)}</td><td>{_e(value)}</td></tr>" for label, value in rows)
    return ('<section><h2>Ratings</h2><table class="data measurements"><tr><th>measured</th>'
            f"<th>value</th></tr>{body}</table>"
            '<div class="note">EPVS counts are on one side of the axial slice with the most '
            "(grades 0 none, 1 1–10, 2 11–20, 3 21–40, 4 &gt;40); — = not measured.</div>"
            "</section>")


def _grade(task: str, m: dict[str, Any]) -> str:
    if task == "wmh":
        return f"Fazekas PV {_fmt(m['fazekas_pv'])}, deep {_fmt(m['fazekas_deep'])}"
    if task == "epvs":
        return f"BG grade {_fmt(m['epvs_bg_grade'])}, CSO grade {_fmt(m['epvs_cso_grade'])}"
    if task == "cmb":
        return (f"lobar {_fmt(m['cmb_lobar'])}, deep {_fmt(m['cmb_deep'])}, "
                f"infratentorial {_fmt(m['cmb_infratentorial'])}")
    return "not scored" if task == "rssi" else "—"


def _markers(report: dict[str, Any]) -> str:
    sections = []
    for task, marker in report["markers"].items():
        swatch = (f'<span class="swatch{" ring" if marker["kind"] == "detection" else ""}" '
                  f'style="background:{MARKER_COLOURS[task]};border-color:{MARKER_COLOURS[task]}">'
                  "</span>")
        head = (f'<h3>{swatch}{_e(MARKER_TITLES[task])}</h3><table class="data summary"><tr>'
                f'<th>count</th><th>volume (ml)</th><th>grade</th></tr><tr>'
                f'<td data-count="{_fmt(marker["count"])}">{_fmt(marker["count"])}</td>'
                f'<td>{_fmt(marker["volume_ml"], 3)}</td>'
                f'<td>{_e(_grade(task, report["measurements"]))}</td></tr></table>')
        if not marker["predicted"]:
            sections.append(f'<div class="marker" data-marker="{task}">{head}'
                            f'<div class="note not-measured">'
                            f'{_e(marker.get("not_measured") or "not predicted by this model")}'
                            '</div></div>')
            continue
        region_rows = "".join(
            f'<tr data-region="{_e(region)}" data-total="{sides["total"]}"><td>'
            f'{_e(region.replace("_", " "))}</td>'
            + "".join(f"<td>{sides[s]}</td>" for s in SIDE_TITLES) + f'<td>{sides["total"]}</td></tr>'
            for region, sides in marker["by_region"].items())
        by_region = ("" if not region_rows else
                     '<table class="data regions"><tr><th>region</th>'
                     + "".join(f"<th>{t}</th>" for t in SIDE_TITLES.values())
                     + f"<th>total</th></tr>{region_rows}</table>")
        volume_head = "<th>mm³</th>" if marker["kind"] == "segmentation" else ""
        finding_rows = "".join(
            f'<tr data-index="{f["index"]}"><td>{f["index"]}</td>'
            + "".join(f"<td>{x:.1f}</td>" for x in f["world_mm"])
            + f'<td>{f["confidence"]:.2f}</td>'
            + (f'<td>{_fmt(f["volume_mm3"], 1)}</td>' if volume_head else "")
            + f'<td>{_e(f["region"].replace("_", " "))}</td><td>{f["side"]}</td></tr>'
            for f in marker["findings"])
        listing = ("" if not finding_rows else
                   f'<details><summary>{len(marker["findings"])} findings (world mm)</summary>'
                   '<table class="data findings"><tr><th>#</th><th>x</th><th>y</th><th>z</th>'
                   f"<th>conf.</th>{volume_head}<th>region</th><th>side</th></tr>"
                   f"{finding_rows}</table></details>")
        sections.append(f'<div class="marker" data-marker="{task}">{head}{by_region}{listing}'
                        "</div>")
    return ('<section><h2>Findings by marker</h2><div class="markers">' + "".join(sections)
            + "</div></section>")


def _picture_table(kind: str, columns: list[tuple[str, str]], levels: list[tuple[int, float]],
                   cells: dict[tuple[str, int], str]) -> str:
    """A grid of pictures: one column per ``(key, title)``, one row per ``(slice, z mm)``."""
    head = "<tr><th></th>" + "".join(f"<th>{_e(title)}</th>" for _, title in columns) + "</tr>"
    rows = []
    for index, z in levels:
        row = [f'<th class="level">z {z:.0f} mm</th>']
        for key, _ in columns:
            row.append(f'<td><img class="{kind}" data-column="{_e(key)}" data-slice="{index}" '
                       f'alt="{_e(key)} slice {index}" src="{cells[key, index]}"></td>')
        rows.append("<tr>" + "".join(row) + "</tr>")
    return f'<table class="pics {kind}">{head}{"".join(rows)}</table>'


def _ordered_sequences(result: SubjectResult) -> list[str]:
    known = list(DEFAULT_SEQUENCES)
    return sorted(result.sequences, key=lambda n: (known.index(n) if n in known else len(known), n))


def _montage(result: SubjectResult, canvas: pictures.Canvas) -> str:
    sequences = _ordered_sequences(result)
    if not sequences:
        return "<section><h2>Findings on the images</h2><p>No sequence images.</p></section>"
    indices = pictures.montage_slices(result)
    z, axis = slice_levels(result.affine, result.shape)
    brain = np.asarray(result.brain_mask, dtype=bool)
    cells = {}
    for name in sequences:
        grey = pictures.window(result.sequences[name], brain, indices, axis)
        for k in indices:
            cells[name, k] = pictures.png_data_uri(
                pictures.findings_panel(result, canvas, name, k, grey))
    legend = "".join(
        f'<span><span class="swatch{" ring" if task in pictures.POINT_MARKERS else ""}" '
        f'style="background:{MARKER_COLOURS[task]};border-color:{MARKER_COLOURS[task]}">'
        f"</span>{_e(task.upper())}</span>"
        for task in (*pictures.MASK_MARKERS, *pictures.POINT_MARKERS) if task in result.findings)
    table = _picture_table("montage", [(n, n.upper()) for n in sequences],
                           [(k, float(z[k])) for k in indices], cells)
    return ('<section><h2>Findings on the images</h2><div class="legend">' + legend
            + '</div><div class="note">Axial slices with the most findings; patient\'s right on '
            "the left, anterior up. Lesions outlined, points circled.</div>" + table
            + "</section>")


def _qc(result: SubjectResult, canvas: pictures.Canvas) -> str:
    reference = result.reference
    if reference not in result.sequences:
        return ""
    indices = pictures.qc_slices(result)
    z, axis = slice_levels(result.affine, result.shape)
    brain = np.asarray(result.brain_mask, dtype=bool)
    grey = pictures.window(result.sequences[reference], brain, indices, axis)
    levels = [(k, float(z[k])) for k in indices]
    cells: dict[tuple[str, int], str] = {}
    columns = [("brain_mask", f"brain mask on {reference.upper()}")]
    for k in indices:
        cells["brain_mask", k] = pictures.png_data_uri(
            pictures.brain_mask_panel(result, canvas, k, grey))
        cells["regions", k] = pictures.png_data_uri(pictures.regions_panel(result, canvas, k, grey))
    for name in _ordered_sequences(result):
        if name == reference:
            continue
        columns.append((f"edges_{name}", f"{name.upper()} edges"))
        for k in indices:
            cells[f"edges_{name}", k] = pictures.png_data_uri(
                pictures.coregistration_panel(result, canvas, name, k, grey))
    columns.append(("regions", "region atlas"))
    shown = set(np.flatnonzero(np.bincount(np.asarray(result.regions).ravel())).tolist())
    legend = "".join(
        f'<span><span class="swatch" style="background:{colour}"></span>'
        f'{_e(name.replace("_", " "))}</span>'
        for name, colour in pictures.REGION_COLOURS.items()
        if pictures.REGION_CODES[name] in shown)
    return ('<section><h2>Quality control</h2><div class="note">Brain mask outline (cyan); '
            f"edges of each registered sequence (magenta) over {_e(reference.upper())}: they "
            "should follow the same ventricles and cortex; region atlas placed by registration, "
            "which assigns each finding its region.</div>"
            + _picture_table("qc", columns, levels, cells)
            + f'<div class="legend">{legend}</div></section>')


def _dicom_source(report: dict[str, Any]) -> str:
    """The DICOM series each channel was read from, and why (empty for NIfTI input)."""
    source = report.get("dicom_source")
    if not source:
        return ""
    rows = "".join(
        f'<tr data-channel="{_e(channel)}"><td>{_e(channel)}</td>'
        f'<td>{_e(s["series_number"])}</td><td>{_e(s["description"])}</td>'
        f'<td><code>{_e(s["series_uid"])}</code></td><td>{_e(s["images"])}</td>'
        f'<td>{_e(" × ".join(f"{v:g}" for v in s["voxel_mm"]))}</td><td>{_e(s["reason"])}</td>'
        "</tr>" for channel, s in source["series"].items())
    excluded = "".join(f"<li>{_e(label)}: {_e(why)}</li>"
                       for label, why in source["excluded"].items())
    return ('<section><h2>Source DICOM series</h2>'
            f'<div class="note">Study <code>{_e(source["study_uid"])}</code> · patient '
            f'{_e(source["patient_id"])} · {_e(source["study_date"])} · series chosen by '
            f'acquisition with the rules {_e(source["rules"]["path"])} (sha256 '
            f'<code>{_e(source["rules"]["sha256"][:12])}…</code>)</div>'
            '<table class="data" data-dicom-source="1"><tr><th>channel</th><th>series</th>'
            "<th>description</th><th>SeriesInstanceUID</th><th>images</th><th>voxel (mm)</th>"
            f"<th>why</th></tr>{rows}</table>"
            + (f"<details><summary>{len(source['excluded'])} series set aside</summary>"
               f"<ul>{excluded}</ul></details>" if excluded else "")
            + "</section>")


def _about(report: dict[str, Any]) -> str:
    model = report["model"]
    timings = "".join(f"<tr><td>{_e(stage)}</td><td>{seconds:.2f}</td></tr>"
                      for stage, seconds in report["timings"].items())
    spacing = " × ".join(f"{s:g}" for s in model["spacing"])
    thresholds = ", ".join(f"{k} {v:g}" for k, v in model["thresholds"].items())
    return ('<section><h2>Model and run</h2><table class="data"><tr><th>field</th><th>value'
            f'</th></tr><tr><td>model path</td><td>{_e(model["path"])}</td></tr>'
            f'<tr><td>sha256</td><td><code>{_e(model["sha256"])}</code></td></tr>'
            f'<tr><td>input channels</td><td>{_e(", ".join(model["channels"]))}</td></tr>'
            f"<tr><td>working spacing (mm)</td><td>{_e(spacing)}</td></tr>"
            f"<tr><td>thresholds</td><td>{_e(thresholds)}</td></tr></table>"
            '<table class="data"><tr><th>stage</th><th>seconds</th></tr>'
            f"{timings}</table>"
            f'<div class="note">report.json schema {_e(report["schema_version"])}</div>'
            "</section>")
