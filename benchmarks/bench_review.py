"""Time the review app in headless Chromium over a predict folder: page ready, accept round trips.

    python benchmarks/bench_review.py PRED_DIR [--reviewer bench] [--keep]

Starts ``csvdnet review PRED_DIR`` on a free loopback port and drives Debian's chromium through
chromium-driver (Selenium). For the first two subjects: the subject's page opened by its URL
(cold for the first: nothing prepared; the second is prepared in the background while the first
is reviewed, as when a rater goes on with ``]``; ``--pause`` seconds are left for that, since the
keys here take seconds where a rater takes minutes), then every finding accepted with the ``a`` key.
Times are the page's own (``window.__review``: from the key press to the next card drawn after
review.json is on disk; from opening to the first card and the viewer drawn). The review written
(``PRED_DIR/<subject>/review/<reviewer>/``) is removed afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import describe_machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pred_dir", type=Path)
    parser.add_argument("--reviewer", default="bench")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--pause", type=float, default=10.0,
                        help="Seconds between the first subject's last key and opening the "
                             "second (the background preparation's time).")
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains

    from csvdnet.review.subject import list_subjects

    subjects = list_subjects(args.pred_dir)[:2]
    pages = {sid: (args.pred_dir / sid / "report.html") for sid in subjects}
    saved = {sid: page.read_bytes() for sid, page in pages.items() if page.is_file()}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", "from csvdnet.cli import cli; cli()",
                               "review", str(args.pred_dir), "--port", str(port), "--reviewer",
                               args.reviewer], stdout=subprocess.PIPE, text=True)
    server.stdout.readline()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,950"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    rows = []
    try:
        for n, sid in enumerate(subjects):
            if n:  # a rater spends minutes on a subject; the keys above took seconds
                time.sleep(args.pause)
            driver.get(f"http://127.0.0.1:{port}/#/subject/{sid}")
            if n:
                driver.refresh()
            end = time.monotonic() + 120
            while driver.execute_script("return document.body.dataset.view") != "subject":
                assert time.monotonic() < end, "page never ready"
                time.sleep(0.01)
            ready = driver.execute_script("return window.__review.ready.at(-1).ms")
            count = driver.execute_script("return S.subject.findings.length")
            for k in range(count):
                ActionChains(driver).send_keys("a").perform()
                while driver.execute_script("return window.__review.roundTrips.length") <= k:
                    time.sleep(0.005)
            trips = driver.execute_script("return window.__review.roundTrips")
            shape = driver.execute_script("return S.subject.shape")
            how = "cold" if n == 0 else f"prepared ({args.pause:.0f} s after the first)"
            rows.append((sid, how,
                         shape, ready, count, statistics.median(trips),
                         sorted(trips)[int(0.95 * (len(trips) - 1))], max(trips)))
    finally:
        driver.quit()
        os.kill(server.pid, signal.SIGINT)
        server.wait(timeout=10)
        if not args.keep:  # the review and its section in report.html go again
            for sid in subjects:
                shutil.rmtree(args.pred_dir / sid / "review" / args.reviewer, ignore_errors=True)
            for sid, content in saved.items():
                pages[sid].write_bytes(content)
    print(f"review app, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{describe_machine()}, load average {os.getloadavg()[0]:.1f}\n")
    print("| subject | opened | grid | page ready ms | findings | accept round trip ms "
          "median / p95 / max |\n|---|---|---|---|---|---|")
    for sid, how, shape, ready, count, median, p95, worst in rows:
        print(f"| {sid} | {how} | {'x'.join(map(str, shape))} | {ready:.0f} | {count} | "
              f"{median:.0f} / {p95:.0f} / {worst:.0f} |")


if __name__ == "__main__":
    main()
