"""The review web app: a Bottle WSGI application over one predict folder and one reviewer.

Why Bottle: one pure-Python module with no dependencies of its own, maintained (0.13, 2025),
routes and JSON bodies without a template engine, and a WSGI app that the standard library's
``wsgiref`` serves on loopback. The page is static HTML + one JavaScript file bundled in
``csvdnet/review/static/`` (its own canvas viewer: nothing is fetched from any other host).

Routes (JSON unless said otherwise)::

    GET  /                                the page
    GET  /static/<file>                   review.js, review.css
    GET  /api/subjects                    subject list: status, model totals, findings decided
    GET  /api/subject/<id>                findings, review, model ratings, viewer grid (and the
                                          next subject is prepared in the background)
    GET  /api/subject/<id>/volume/<name>  a sequence (or "overlay": the reviewed masks, one bit
                                          per task) on the reference grid:
                                          raw uint8, C order of the grid's voxel axes
    POST /api/subject/<id>/change         one change (csvdnet.review.store.ReviewStore.change);
                                          answers once review.json is on disk
    GET  /api/subject/<id>/rating         the reviewed ratings and totals, recomputed
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle
import numpy as np

from csvdnet.errors import CsvdnetInputError
from csvdnet.review.page import write_reviewed_section
from csvdnet.review.rating import RatingCache, reviewed_overlay, reviewed_rating
from csvdnet.review.store import ADDABLE, GRADES, ReviewStore, status_of
from csvdnet.review.subject import (BEST_SEQUENCES, ReviewSubject, list_subjects, midline_side)
from csvdnet.scoring import axial_slice_axis

__all__ = ["make_app", "serve"]

STATIC = Path(__file__).parent / "static"
_SEQUENCES = ("flair", "t1", "t2", "swi", "dwi")
_KEEP_SUBJECTS = 4  # the open one, the one prepared next, and two to go back to


def view_axes(affine: np.ndarray) -> dict[str, Any]:
    """Which voxel axes are the screen's slices, columns and rows, shown radiologically
    (patient right on the screen's left, anterior up), and each axis's spacing."""
    slice_axis = axial_slice_axis(affine)
    rest = [a for a in range(3) if a != slice_axis]
    col = max(rest, key=lambda a: abs(affine[0, a]))
    row = [a for a in rest if a != col][0]
    spacing = np.sqrt(np.sum(np.asarray(affine)[:3, :3] ** 2, axis=0))
    return {"slice": slice_axis, "col": col, "row": row,
            "col_flip": bool(affine[0, col] > 0), "row_flip": bool(affine[1, row] > 0),
            "slice_flip": bool(affine[2, slice_axis] < 0),
            "spacing": [float(s) for s in spacing]}


class ReviewApp:
    def __init__(self, pred_dir: Path, reviewer: str,
                 cohort_sequences: dict[str, dict[str, Path]] | None = None):
        self.pred_dir = Path(pred_dir)
        self.ids = list_subjects(self.pred_dir)
        self.store = ReviewStore(self.pred_dir, reviewer)
        self.cohort_sequences = cohort_sequences or {}
        # The subjects in memory (their volumes: ~15 MB each on a clinical grid), most recent
        # last; a long session keeps only the last few.
        self._subjects: OrderedDict[str, ReviewSubject] = OrderedDict()
        self._lock = threading.Lock()
        self._warming = threading.Lock()
        self.ratings = RatingCache()

    def subject(self, sid: str) -> ReviewSubject:
        if sid not in self.ids:
            bottle.abort(404, f"no subject {sid}")
        with self._lock:
            if sid in self._subjects:
                self._subjects.move_to_end(sid)
            else:
                self._subjects[sid] = ReviewSubject.load(self.pred_dir, sid,
                                                         self.cohort_sequences.get(sid))
                while len(self._subjects) > _KEEP_SUBJECTS:
                    self._subjects.popitem(last=False)
            return self._subjects[sid]

    def summary(self, sid: str) -> dict[str, Any]:
        path = self.pred_dir / sid / "report.json"
        report = json.loads(path.read_text(encoding="utf-8"))
        ids = [f"{t}:{f['index']}" for t, m in (report.get("markers") or {}).items()
               for f in (m or {}).get("findings") or []]
        review = self.store.get(sid)
        decided = sum(fid in (review or {}).get("decisions", {}) for fid in ids)
        return {"id": sid, "status": status_of(review, ids), "findings": len(ids),
                "decided": decided,
                "model_totals": {k: v.get("total")
                                 for k, v in (report.get("scores") or {}).items()}}

    def detail(self, sid: str) -> dict[str, Any]:
        subject = self.subject(sid)
        review = self.store.get(sid)
        available = [s for s in _SEQUENCES if s in subject.sequence_paths()
                     and Path(subject.sequence_paths()[s]).is_file()]
        return {
            "id": sid, "reviewer": self.store.reviewer, "shape": list(subject.shape),
            "affine": subject.affine.tolist(), "view": view_axes(subject.affine),
            "sequences": available,
            "best": {t: [s for s in seqs if s in available] or available[:1]
                     for t, seqs in BEST_SEQUENCES.items()},
            "findings": [f.as_dict() for f in subject.findings],
            "review": review, "status": status_of(review, [f.id for f in subject.findings]),
            "model": {"ratings": subject.model_ratings(), "totals": subject.model_totals()},
            "addable": ADDABLE, "grades": GRADES,
            "measured": subject.measured_tasks(), "midline_x": subject.midline_x,
        }

    def warm_next(self, sid: str | None) -> None:
        """Prepare the subject after ``sid`` (the first one without ``sid``) in the background:
        its volumes and its rating, so that opening it does not wait for them."""
        position = self.ids.index(sid) + 1 if sid in self.ids else 0
        if position >= len(self.ids):
            return
        following = self.ids[position]  # (prepared again after it left memory: cheap when not)
        threading.Thread(target=self._warm, args=(following,), daemon=True).start()

    def _warm(self, sid: str) -> None:
        with self._warming:  # one at a time: the 2 cores serve the rater first
            subject = self.subject(sid)
            for name in _SEQUENCES:
                try:
                    subject.volume_u8(name)
                except CsvdnetInputError:
                    continue
            reviewed_overlay(subject, self.store.get(sid))
            self.rating(sid)

    def rating(self, sid: str) -> dict[str, Any]:
        rated = reviewed_rating(self.subject(sid), self.store.get(sid), self.ratings)
        return {"ratings": rated["ratings"], "totals": rated["totals"], "points": rated["points"]}

    def change(self, sid: str, what: dict[str, Any]) -> dict[str, Any]:
        subject = self.subject(sid)
        if "add" in what:
            world = np.asarray(what.get("world", []), dtype=np.float64)
            if world.shape != (3,):
                raise ValueError("world must be [x, y, z]")
            what = {**what, "region": subject.region_at(world),
                    "side": midline_side(float(world[0]), subject.midline_x)}
        review = self.store.change(sid, subject.report, what, {f.id for f in subject.findings})
        status = status_of(review, [f.id for f in subject.findings])
        if status == "done":  # report.html shows the review beside the model (off the hot path)
            threading.Thread(target=self.write_page, args=(sid, review, status),
                             daemon=True).start()
        return {"review": review, "status": status}

    def write_page(self, sid: str, review: dict[str, Any], status: str) -> None:
        subject = self.subject(sid)
        model = {"ratings": subject.model_ratings(), "totals": subject.model_totals()}
        write_reviewed_section(subject.folder / "report.html", self.store.reviewer, model,
                               reviewed_rating(subject, review, self.ratings), review, status)


def make_app(pred_dir: Path, reviewer: str,
             cohort_sequences: dict[str, dict[str, Path]] | None = None) -> bottle.Bottle:
    state = ReviewApp(pred_dir, reviewer, cohort_sequences)
    todo = [sid for sid in state.ids if state.summary(sid)["status"] != "done"]
    if todo:  # prepare the subject a rater starts with while the browser opens
        position = state.ids.index(todo[0])
        state.warm_next(state.ids[position - 1] if position else None)
    app = bottle.Bottle()
    app.config["review.state"] = state

    def as_json(data: Any) -> str:
        bottle.response.content_type = "application/json"
        bottle.response.set_header("Cache-Control", "no-store")
        return json.dumps(data)

    @app.get("/")
    def index():
        return bottle.static_file("review.html", root=str(STATIC))

    @app.get("/favicon.ico")
    def favicon():
        bottle.response.status = 204
        return ""

    @app.get("/static/<name>")
    def static(name: str):
        return bottle.static_file(name, root=str(STATIC))

    @app.get("/api/subjects")
    def subjects():
        listing = [state.summary(s) for s in state.ids]
        todo = [s["id"] for s in listing if s["status"] != "done"]
        if todo:  # the subject a rater opens next
            state.warm_next(state.ids[state.ids.index(todo[0]) - 1] if state.ids.index(todo[0])
                            else None)
        return as_json({"reviewer": state.store.reviewer, "subjects": listing})

    @app.get("/api/subject/<sid>")
    def detail(sid: str):
        answer = as_json(state.detail(sid))
        state.warm_next(sid)
        return answer

    @app.get("/api/subject/<sid>/rating")
    def rating(sid: str):
        return as_json(state.rating(sid))

    @app.get("/api/subject/<sid>/volume/<name>")
    def volume(sid: str, name: str):
        subject = state.subject(sid)
        try:
            data = (reviewed_overlay(subject, state.store.get(sid)) if name == "overlay"
                    else subject.volume_u8(name))
        except CsvdnetInputError as exc:
            bottle.abort(404, str(exc))
        bottle.response.content_type = "application/octet-stream"
        bottle.response.set_header("Cache-Control", "no-store")
        return np.ascontiguousarray(data).tobytes()

    @app.post("/api/subject/<sid>/change")
    def change(sid: str):
        try:
            what = json.loads(bottle.request.body.read() or b"{}")
            if not isinstance(what, dict):
                raise ValueError("a change is a JSON object")
            return as_json(state.change(sid, what))
        except ValueError as exc:
            bottle.response.status = 400
            return as_json({"error": str(exc)})

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:  # one line per request would drown the terminal
        pass


def serve(app: bottle.Bottle, host: str, port: int, ready=None) -> None:
    """Serve until interrupted; ``ready(url)`` is called once the socket listens."""
    server = make_server(host, port, app, server_class=_ThreadingServer,
                         handler_class=_QuietHandler)
    url = f"http://{host}:{server.server_port}/"
    if ready is not None:
        ready(url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
