"""The report for a human as DICOM Secondary Capture images, for viewers without SR.

Secondary Capture rather than an encapsulated PDF: every PACS viewer displays an SC image in
the study beside the MR series, while encapsulated PDF needs a viewer that opens documents (many
show only a placeholder). Two images: a summary page (grey, MONOCHROME2: the scores, ratings,
counts and volumes of ``report.json``, "not measured" where it says so), and the findings
montage (RGB) of ``report.html`` (the same pictures, decoded from the page: axial slices of
every sequence, lesions outlined, points circled), so the DICOM pictures are exactly those a
reader of the HTML report sees.
"""

from __future__ import annotations

import base64
import html.parser
import io
from pathlib import Path

import highdicom as hd
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from csvdnet.dicom.provenance import MANUFACTURER, Provenance
from csvdnet.slices import MARKER_COLOURS

__all__ = ["REPORT_SERIES", "build_captures", "montage_rows", "summary_lines"]

REPORT_SERIES = (9920, "csvdnet report")
_FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
_BOLD = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
_BACKGROUND, _INK, _DIM = (0, 0, 0), (235, 235, 235), (150, 150, 150)
_LEGEND = (("wmh", "WMH"), ("lacune", "lacune"), ("rssi", "RSSI"), ("cmb", "microbleed"),
           ("epvs", "EPVS"))


class _Montage(html.parser.HTMLParser):
    """Collects report.html's findings montage: rows of (level, [(column, PNG bytes)])."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[str, list[tuple[str, bytes]]]] = []
        self._in_level = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "th" and "level" in classes:
            self.rows.append(("", []))
            self._in_level = True
        elif tag == "img" and "montage" in classes and self.rows:
            src = attrs.get("src") or ""
            if src.startswith("data:image/png;base64,"):
                png = base64.b64decode(src.split(",", 1)[1])
                self.rows[-1][1].append((attrs.get("data-column") or "", png))

    def handle_endtag(self, tag):
        if tag == "th":
            self._in_level = False

    def handle_data(self, data):
        if self._in_level and self.rows:
            level, cells = self.rows[-1]
            self.rows[-1] = (level + data.strip(), cells)


def montage_rows(report_html: Path) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """The montage of a report.html: ``[(level, [(sequence, RGB array)])]``; [] if none."""
    try:
        text = report_html.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    parser = _Montage()
    parser.feed(text)
    rows = []
    for level, cells in parser.rows:
        pictures = [(column, np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
                    for column, png in cells]
        if pictures:
            rows.append((level, pictures))
    return rows


def _value(value, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def summary_lines(report: dict, patient: Dataset) -> list[tuple[str, str]]:
    """The summary page as ``(style, text)`` lines, style ``title``, ``head``, ``text`` or
    ``dim``."""
    m = report["measurements"]
    markers = report["markers"]

    def why(task: str) -> str:
        marker = markers.get(task, {})
        if marker.get("predicted", True):
            return ""
        return f"  ({marker.get('not_measured') or 'not predicted by this model'})"

    lines = [("title", "csvdnet: cerebral small vessel disease"),
             ("dim", f"Patient {patient.get('PatientID', '')}   study "
                     f"{patient.get('StudyDate', '')}   subject {report.get('subject', '')}"),
             ("dim", "Automated result, to be checked by a radiologist."), ("text", ""),
             ("head", "Scores")]
    for name, score in sorted(report.get("scores", {}).items()):
        points = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in score.get("points", {}).items())
        undecided = score.get("undecided") or []
        if undecided:
            points += "; undecided: " + ", ".join(u.replace("_", " ") for u in undecided)
        total = "undecided" if score.get("total") is None else score["total"]
        lines.append(("text", f"{name}: {total} / {score.get('maximum')}"
                              f"   ({points})"))
    ordinal = report.get("ordinal") or {}
    agreement = {True: "agrees with staals-2014", False: "DISAGREES with staals-2014",
                 None: "no staals-2014 total to compare"}[report.get("agreement")]
    lines += [("text", f"ordinal head: {_value(ordinal.get('total'))}   ({agreement})"),
              ("text", ""), ("head", "Ratings and findings"),
              ("text", f"WMH: {_value(m['wmh_volume_ml'], ' ml', 2)} (periventricular "
                       f"{_value(m['wmh_periventricular_ml'], ' ml', 2)}, deep "
                       f"{_value(m['wmh_deep_ml'], ' ml', 2)}){why('wmh')}"),
              ("text", f"Fazekas periventricular {_value(m['fazekas_pv'])}, deep "
                       f"{_value(m['fazekas_deep'])}"),
              ("text", f"Lacunes: {_value(m['lacune_count'])} "
                       f"({_value(m['lacune_volume_ml'], ' ml', 2)}){why('lacune')}"),
              ("text", f"Microbleeds: {_value(m['cmb_count'])} (lobar {_value(m['cmb_lobar'])}, "
                       f"deep {_value(m['cmb_deep'])}, infratentorial "
                       f"{_value(m['cmb_infratentorial'])}){why('cmb')}"),
              ("text", f"EPVS basal ganglia: grade {_value(m['epvs_bg_grade'])} "
                       f"({_value(m['epvs_bg_count'])} on one side){why('epvs')}"),
              ("text", f"EPVS centrum semiovale: grade {_value(m['epvs_cso_grade'])} "
                       f"({_value(m['epvs_cso_count'])} on one side)"),
              ("text", f"RSSI (in no total score): {_value(m['rssi_count'])} "
                       f"({_value(m['rssi_volume_ml'], ' ml', 2)}){why('rssi')}")]
    if report.get("flags"):
        lines += [("text", ""), ("head", "Flags")] + [("text", f) for f in report["flags"]]
    model = report.get("model", {})
    lines += [("text", ""), ("dim", f"model {model.get('id', '')}"),
              ("dim", f"sha256 {model.get('sha256', '')}"),
              ("dim", f"csvdnet {report.get('csvdnet_version', '')}, {report.get('created', '')}")]
    return lines


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    words, lines, line = text.split(" "), [], ""
    for word in words:
        trial = f"{line} {word}" if line else word
        if line and font.getlength(trial) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + [line]


def _summary_page(lines: list[tuple[str, str]], width: int = 1024) -> np.ndarray:
    fonts = {"title": ImageFont.truetype(str(_BOLD), 30),
             "head": ImageFont.truetype(str(_BOLD), 22),
             "text": ImageFont.truetype(str(_FONT), 20), "dim": ImageFont.truetype(str(_FONT), 17)}
    laid = [(style, piece) for style, text in lines
            for piece in _wrap(text, fonts[style], width - 64)]
    height = 48 + sum(int(fonts[s].size * 1.45) for s, _ in laid)
    page = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(page)
    y = 32
    for style, text in laid:
        draw.text((32, y), text, font=fonts[style], fill=_DIM if style == "dim" else _INK)
        y += int(fonts[style].size * 1.45)
    return np.asarray(page.convert("L"))  # text only: one grey channel, a third of the bytes


def _montage_page(rows, title: str) -> np.ndarray:
    font = ImageFont.truetype(str(_FONT), 18)
    label_w, head_h, gap = 110, 86, 4
    cell_h = max(p.shape[0] for _, cells in rows for _, p in cells)
    cell_w = max(p.shape[1] for _, cells in rows for _, p in cells)
    columns = list(dict.fromkeys(c for _, cells in rows for c, _ in cells))
    width = label_w + len(columns) * (cell_w + gap)
    height = head_h + len(rows) * (cell_h + gap) + 8
    page = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(page)
    draw.text((8, 6), title, font=font, fill=_INK)
    x = 8
    for task, name in _LEGEND:
        colour = MARKER_COLOURS[task]
        draw.rectangle((x, 36, x + 14, 50), outline=colour, width=3)
        draw.text((x + 20, 32), name, font=font, fill=_INK)
        x += 20 + int(font.getlength(name)) + 24
    for k, column in enumerate(columns):
        draw.text((label_w + k * (cell_w + gap) + 4, 60), column.upper(), font=font, fill=_INK)
    for r, (level, cells) in enumerate(rows):
        top = head_h + r * (cell_h + gap)
        draw.text((8, top + cell_h // 2 - 10), level, font=font, fill=_INK)
        for column, picture in cells:
            k = columns.index(column)
            page.paste(Image.fromarray(picture), (label_w + k * (cell_w + gap), top))
    return np.asarray(page)


def build_captures(report: dict, report_html: Path, reference: Dataset, provenance: Provenance
                   ) -> list[hd.sc.SCImage]:
    """The summary page and (when report.html has one) the findings montage as SC images.

    Args:
        report: The subject's report.json.
        report_html: Its report.html (the montage's source; missing = summary only).
        reference: A source image whose patient / study attributes the captures take.
        provenance: Model, study, time.
    """
    pages = [_summary_page(summary_lines(report, reference))]
    rows = montage_rows(report_html)
    if rows:
        pages.append(_montage_page(rows, "csvdnet findings: lesions outlined, points circled; "
                                         "patient's right on the left"))
    series_uid = provenance.series_uid("report")
    captures = []
    for number, pixels in enumerate(pages, start=1):
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=reference, pixel_array=np.ascontiguousarray(pixels, dtype=np.uint8),
            photometric_interpretation="RGB" if pixels.ndim == 3 else "MONOCHROME2",
            bits_allocated=8, coordinate_system="PATIENT",
            series_instance_uid=series_uid, series_number=REPORT_SERIES[0],
            sop_instance_uid=provenance.instance_uid(series_uid, pixels.tobytes(), number),
            instance_number=number, manufacturer=MANUFACTURER, patient_orientation=("L", "P"),
            series_description=REPORT_SERIES[1])
        sc.BodyPartExamined = "BRAIN"  # unpaired: no Laterality (dciodvfy checks the pair)
        sc.BurnedInAnnotation = "YES"  # patient id and study date are drawn on the summary
        provenance.stamp(sc)
        captures.append(sc)
    return captures
