"""The review app in a real browser (Debian chromium + chromium-driver through Selenium; nothing
downloaded): a rater works through a subject with the keyboard, rejects the planted false
microbleed, accepts the rest, adds the missed one with a click; review.json survives a kill -9 of
the server; the export is a cohort that ``csvdnet evaluate`` and the training reader take."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from _review_fixture import FALSE_CMB, SUBJECT, make_prediction
from click.testing import CliRunner

from csvdnet.cli import cli
from csvdnet.io import load_nifti, read_cohort, read_points
from csvdnet.review.store import read_review, review_path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
selenium = pytest.importorskip("selenium", reason="selenium is in the test extra")
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="needs Debian's chromium and chromium-driver (.ci/run)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(pred: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", "from csvdnet.cli import cli; cli()", "review", str(pred),
         "--port", str(port), "--reviewer", "alice"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = process.stdout.readline()
    assert line.startswith("csvdnet review: http://127.0.0.1:"), line
    return process


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,950",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(DRIVER))


def _wait(driver, condition, seconds: float = 10.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = driver.execute_script(condition)
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for: {condition}")


def test_a_rater_reviews_a_subject_with_the_keyboard_and_the_export_evaluates(tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    planted = make_prediction(tmp_path)
    pred, port = planted["pred"], _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _start_server(pred, port)
    driver = _browser()
    try:
        driver.get(base + "/")
        _wait(driver, "return document.body.dataset.view === 'list'")
        driver.save_screenshot(str(tmp_path / "1-list.png"))
        driver.find_element(By.CSS_SELECTOR, f"tr[data-subject='{SUBJECT}']").click()
        _wait(driver, "return document.body.dataset.view === 'subject'")
        ready_ms = driver.execute_script("return window.__review.ready[0].ms")
        driver.save_screenshot(str(tmp_path / "2-first-card.png"))
        detail = _get(f"{base}/api/subject/{SUBJECT}")
        ids = [f["id"] for f in detail["findings"]]
        assert ids[0] == FALSE_CMB  # microbleeds come first
        keys = ActionChains(driver)
        for n, fid in enumerate(ids):
            shown = driver.find_element(By.ID, "card").get_attribute("data-finding")
            assert shown == fid
            keys.send_keys("r" if fid == FALSE_CMB else "a").perform()
            _wait(driver, f"return window.__review.roundTrips.length === {n + 1}")
        round_trips = driver.execute_script("return window.__review.roundTrips")
        driver.save_screenshot(str(tmp_path / "3-all-decided.png"))

        # The missed microbleed: scroll to its slice, press c, click where it is.
        view, shape = detail["view"], detail["shape"]
        target = planted["missed_voxel"]
        now = int(driver.find_element(By.ID, "slice").text.split("/")[0]) - 1
        step = int(round(target[view["slice"]])) - now
        for _ in range(abs(step)):
            keys.send_keys("\ue013" if step > 0 else "\ue015").perform()  # arrow up / down
        assert driver.find_element(By.ID, "slice").text.startswith(
            f"{int(round(target[view['slice']])) + 1} /")
        keys.send_keys("c").perform()
        canvas = driver.find_element(By.ID, "viewer")
        width, height = canvas.size["width"], canvas.size["height"]
        nc, nr = shape[view["col"]], shape[view["row"]]
        col = nc - 1 - target[view["col"]] if view["col_flip"] else target[view["col"]]
        row = nr - 1 - target[view["row"]] if view["row_flip"] else target[view["row"]]
        keys.move_to_element_with_offset(canvas, int((col + 0.5) / nc * width - width / 2),
                                         int((row + 0.5) / nr * height - height / 2)).click()
        keys.perform()
        _wait(driver, "return document.querySelector('#message').textContent"
                      ".startsWith('added added:1')")
        _wait(driver, "return document.querySelector('[data-total=\"CMB\"] td:last-child')"
                      ".textContent === '1'")
        driver.save_screenshot(str(tmp_path / "4-added-microbleed.png"))
        # A lacune ball of 4 mm (l, then + + from 3 mm) added on the same spot, then withdrawn (r).
        keys.send_keys("l").send_keys("+").send_keys("+").perform()
        assert "ball of 4 mm radius" in driver.find_element(By.ID, "mode").text
        keys.move_to_element_with_offset(canvas, int((col + 0.5) / nc * width - width / 2),
                                         int((row + 0.5) / nr * height - height / 2)).click()
        keys.perform()
        _wait(driver, "return document.querySelector('#message').textContent"
                      ".startsWith('added added:2')")
        keys.send_keys("r").perform()
        _wait(driver, f"return window.__review.roundTrips.length === {len(ids) + 1}")
        # A grade set by the rater replaces the measured one; the totals follow.
        from selenium.webdriver.support.ui import Select

        Select(driver.find_element(By.CSS_SELECTOR, "select[data-grade='fazekas_deep']")
               ).select_by_value("1")
        _wait(driver, "return document.querySelector('[data-total=\"Fazekas deep\"] "
                      "td:last-child').textContent === '1'")
        shown_totals = driver.execute_script(
            "return [...document.querySelectorAll('#totals tr[data-total]')].map("
            "r => [r.dataset.total, r.children[1].textContent, r.children[2].textContent])")
    finally:
        driver.quit()
        # kill -9: no chance to flush anything; what was answered must already be on disk
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)

    review = read_review(review_path(pred, SUBJECT, "alice"))
    assert review["reviewer"] == "alice" and review["subject"] == SUBJECT
    assert review["decisions"][FALSE_CMB]["decision"] == "reject"
    assert all(review["decisions"][fid]["decision"] == "accept" for fid in ids[1:])
    added, ball = review["added"]
    assert ball["task"] == "lacune" and ball["radius_mm"] == 4.0
    assert review["decisions"][ball["id"]]["decision"] == "reject"  # withdrawn
    affine = planted["affine"]
    missed_world = (affine @ [*planted["missed_voxel"], 1.0])[:3]
    spacing = np.sqrt(np.sum(affine[:3, :3] ** 2, axis=0))
    assert added["task"] == "cmb"
    assert np.all(np.abs(np.asarray(added["world"]) - missed_world) <= spacing * 0.51)
    assert added["region"] == "deep_wm"
    assert review["grades"] == {"fazekas_deep": 1}

    # report.html got the reviewed state when the subject was done (written beside the page)
    page = (pred / SUBJECT / "report.html").read_text()
    assert 'data-reviewer="alice" data-status="done"' in page

    # A restarted server finds the subject done, with the totals the page showed.
    server = _start_server(pred, port)
    try:
        listing = _get(f"{base}/api/subjects")["subjects"]
        assert listing[0]["status"] == "done" and listing[0]["decided"] == len(ids)
        reviewed = _get(f"{base}/api/subject/{SUBJECT}/rating")
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
    by_name = {name: (model, mine) for name, model, mine in shown_totals}
    assert by_name["Staals total (0-4)"][1] == str(reviewed["totals"]["staals-2014"])
    assert reviewed["ratings"]["cmb_count"] == 1  # the false one out, the missed one in

    # Export: a cohort that evaluate and the training reader take as it is.
    out = tmp_path / "reviewed"
    runner = CliRunner()
    result = runner.invoke(cli, ["review", "export", str(pred), "--out", str(out)])
    assert result.exit_code == 0, result.output
    cohort = read_cohort(out / "manifest.csv")
    [subject] = cohort.subjects
    assert {"flair", "t1", "t2", "swi", "dwi"} <= set(subject.sequences)
    [cmb] = read_points(subject.labels["cmb"])
    assert np.allclose(cmb, added["world"], atol=1e-3)
    for task in ("wmh", "rssi", "lacune"):
        truth = load_nifti(planted["cohort"] / SUBJECT / "labels" / f"{task}.nii.gz",
                           kind="labelmap").data == 1
        assert np.array_equal(load_nifti(subject.labels[task], kind="labelmap").data > 0, truth)
    with open(out / "ratings.csv", newline="") as handle:
        [rating] = list(csv.DictReader(handle))
    assert rating["cmb_count"] == "1" and rating["fazekas_deep"] == "1"
    assert rating["total_score"] == str(reviewed["totals"]["staals-2014"])
    result = runner.invoke(cli, ["evaluate", "--cohort", str(out / "manifest.csv"), "--pred",
                                 str(pred), "--out", str(tmp_path / "evaluation")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "evaluation" / "summary.json").read_text())
    assert summary  # evaluate read the reviewed cohort as a labelled one

    # The UI's own timing: each accept / reject -> next card, and the page.
    timings = {"ready_ms": ready_ms, "round_trip_median_ms": statistics.median(round_trips),
               "round_trip_max_ms": max(round_trips), "decisions": len(round_trips)}
    (tmp_path / "timings.json").write_text(json.dumps(timings))
    print("review timings", timings, "screenshots in", tmp_path)
    assert ready_ms <= 1000, timings
    assert timings["round_trip_median_ms"] <= 100, timings
