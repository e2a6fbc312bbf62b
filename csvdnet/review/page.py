"""The reviewed state in a subject's ``report.html``, beside the model's.

A section (model vs reviewed: both totals, every rating, the decisions made, who and when) goes
where :data:`csvdnet.inference.report_html.REVIEW_MARK` is (right after the score cards), between
two markers so that a later review replaces it; a page written before the mark existed gets it
above its score cards. The page is rewritten atomically. Each reviewer has a section of their
own (two reviewers side by side).
"""

from __future__ import annotations

import html
import re
import threading
from pathlib import Path
from typing import Any

from csvdnet.fsutil import write_text_atomic
from csvdnet.inference.report_html import REVIEW_MARK

__all__ = ["write_reviewed_section"]

_ROWS = (("Total SVD score (Staals 2014)", "totals", "staals-2014"),
         ("CAA-SVD score (Charidimou 2016)", "totals", "caa-svd-2016"),
         ("Fazekas periventricular", "ratings", "fazekas_pv"),
         ("Fazekas deep", "ratings", "fazekas_deep"),
         ("EPVS basal ganglia grade", "ratings", "epvs_bg_grade"),
         ("Microbleeds", "ratings", "cmb_count"), ("Lacunes", "ratings", "lacune_count"),
         ("RSSI", "ratings", "rssi_count"))
_LOCK = threading.Lock()
_CHANGED = ' class="changed" style="background:#fff1d6"'  # the page's own CSS has no such rule


def _cell(value: Any) -> str:
    return "—" if value is None else html.escape(str(value))


def _section(reviewer: str, model: dict[str, Any], reviewed: dict[str, Any],
             review: dict[str, Any], status: str) -> str:
    decisions = [v["decision"] for v in review["decisions"].values()]
    rows = ""
    for title, part, key in _ROWS:
        before, after = model[part].get(key), reviewed[part].get(key)
        rows += (f'<tr data-item="{html.escape(key)}"{_CHANGED if before != after else ""}>'
                 f"<td>{html.escape(title)}</td><td>{_cell(before)}</td>"
                 f"<td><b>{_cell(after)}</b></td></tr>")
    grades = ", ".join(f"{k} = {v}" for k, v in sorted(review["grades"].items())) or "none"
    who = html.escape(reviewer)
    return (f'<!--review:{who}--><section class="reviewed" data-reviewer="{who}" '
            f'data-status="{html.escape(status)}"><h2>Reviewed by {who} ({html.escape(status)})'
            f'</h2><table class="measures"><tr><th></th><th>model</th><th>reviewed</th></tr>'
            f"{rows}</table><p class=\"note\">{decisions.count('accept')} accepted, "
            f"{decisions.count('reject')} rejected, {decisions.count('unsure')} unsure, "
            f"{len(review['added'])} added; grades set by the reviewer: {html.escape(grades)}; "
            f"last change {html.escape(str(review['updated']))} (review/{who}/review.json)</p>"
            f"</section><!--/review:{who}-->")


def write_reviewed_section(page: Path, reviewer: str, model: dict[str, Any],
                           reviewed: dict[str, Any], review: dict[str, Any], status: str) -> None:
    """Put (or replace) ``reviewer``'s section in ``page``; a missing page is left missing."""
    with _LOCK:
        if not page.is_file():
            return
        text = page.read_text(encoding="utf-8")
        section = _section(reviewer, model, reviewed, review, status)
        who = re.escape(html.escape(reviewer))
        pattern = re.compile(f"<!--review:{who}-->.*?<!--/review:{who}-->", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _: section, text, count=1)
        elif REVIEW_MARK in text:
            text = text.replace(REVIEW_MARK, REVIEW_MARK + section, 1)
        elif "<section><h2>Scores</h2>" in text:  # a page from before the mark: above the scores
            text = text.replace("<section><h2>Scores</h2>", section + "<section><h2>Scores</h2>", 1)
        else:
            text = text.replace("<main>", "<main>" + section, 1)
        write_text_atomic(page, text)
