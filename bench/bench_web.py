"""Dashboard page load times: server time (one HTTP GET, HTML fully received) and browser time
(headless Chromium navigation until the load event), per page, over ``--runs`` loads.

The database is filled as the browser tests fill it (``tests/test_web.py``): a short real
pipeline run with ``--ticks`` hourly ticks (one asset, one target, a LightGBM champion and a
random-forest shadow). ``--ticks`` grows the predictions the charts and the reliability diagram
read; the price chart shows at most 240 candles whatever the history.

    python bench/bench_web.py [--ticks 48] [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the pipeline fill lives in tests/

from signalcast.web.server import WebServer  # noqa: E402
from tests.test_web import ASSET, CHROMIUM, CHROMIUM_ARGS, TARGET, fill_database  # noqa: E402

PAGES = {"overview": "/", "target": f"/target?asset={ASSET}&target={TARGET}",
         "alerts": "/alerts", "tasks": "/tasks"}


def _summary(seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return (f"median {statistics.median(ms):7.1f} ms   p95 {ms[int(0.95 * (len(ms) - 1))]:7.1f}"
            f" ms   max {ms[-1]:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=48)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        engine, settings = fill_database(Path(tmp), ticks=args.ticks)
        print(f"filled by a {args.ticks}-tick pipeline run in {time.perf_counter() - started:.1f}"
              " s")
        server = WebServer(engine, settings, port=0).start()
        try:
            print(f"server (GET, whole HTML), {args.runs} loads each:")
            for name, path in PAGES.items():
                times, size = [], 0
                for _ in range(args.runs):
                    t = time.perf_counter()
                    size = len(urllib.request.urlopen(server.url + path, timeout=30).read())
                    times.append(time.perf_counter() - t)
                print(f"  {name:9s} {size / 1024:6.1f} KiB   {_summary(times)}")
            print(f"browser (headless Chromium, navigation to load event), {args.runs} each:")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                     args=CHROMIUM_ARGS)
                page = browser.new_page()
                for name, path in PAGES.items():
                    times = []
                    for _ in range(args.runs):
                        t = time.perf_counter()
                        page.goto(server.url + path, wait_until="load")
                        times.append(time.perf_counter() - t)
                    print(f"  {name:9s}            {_summary(times)}")
                browser.close()
        finally:
            server.close()


if __name__ == "__main__":
    main()
