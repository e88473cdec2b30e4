"""Open every built page in headless Chromium, offline, and check what it shows.

Run after ``make -C docs html`` (CI does)::

    python docs/check_rendered.py [--html docs/_build/html]

The pages are served by a local HTTP server bound to 127.0.0.1, and Chromium
resolves no other host, as on a machine without network. For every page it
checks that

- no raw TeX is left in the visible text outside code (``\\[``, ``\\(``,
  ``\\begin``): the maths was typeset by the MathJax copy served with the
  site;
- every ``<img>`` loaded (``naturalWidth > 0``), gallery figures included;
- the browser console has no error (level ``SEVERE``), such as a script or
  a file that failed to load.

It saves screenshots of the index and of one user-guide page in
``docs/_build/screenshots/`` (a build artifact, not committed) and exits
with status 1, listing every problem, if a check fails. It needs the
``chromium`` and ``chromium-driver`` Debian packages and ``selenium``
(in the ``docs`` extra).
"""

import argparse
import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

DOCS = Path(__file__).resolve().parent
RAW_TEX = ("\\[", "\\(", "\\begin")
SCREENSHOTS = {
    "index.html": "index.png",
    "user_guide/huber.html": "user_guide_huber.png",
}

# Resolves once the page's maths is typeset and every image has loaded or
# failed; lazy images are made eager so that those below the fold load too.
_WAIT_FOR_PAGE = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
images.forEach(img => { img.loading = "eager"; });
const loaded = images.map(img => img.complete ? Promise.resolve() :
    new Promise(resolve => { img.onload = resolve; img.onerror = resolve; }));
const typeset = (window.MathJax && MathJax.startup && MathJax.startup.promise)
    ? MathJax.startup.promise : Promise.resolve();
Promise.all([typeset, ...loaded]).then(() => done(true), () => done(false));
"""

# The visible text outside code: literal code shows TeX verbatim on purpose
# (MathJax skips <code> and <pre> too), so it is hidden while reading.
_VISIBLE_PROSE = """
const code = Array.from(document.querySelectorAll("pre, code"));
const display = code.map(element => element.style.display);
code.forEach(element => { element.style.display = "none"; });
const text = document.body.innerText;
code.forEach((element, i) => { element.style.display = display[i]; });
return text;
"""

_BROKEN_IMAGES = """
return Array.from(document.images)
    .filter(img => !(img.complete && img.naturalWidth > 0))
    .map(img => img.getAttribute("src"));
"""


def _quiet_handler(directory):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    return functools.partial(Handler, directory=str(directory))


def serve(directory):
    """Serve ``directory`` on 127.0.0.1 in a daemon thread; return the server."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), _quiet_handler(directory)
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def make_browser(width=1280, height=1400):
    """Headless Chromium that resolves no host but 127.0.0.1."""
    options = webdriver.ChromeOptions()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        options.binary_location = binary
    driver = shutil.which("chromedriver")
    service = Service(executable_path=driver) if driver else Service()
    browser = webdriver.Chrome(options=options, service=service)
    browser.set_page_load_timeout(60)
    browser.set_script_timeout(60)
    return browser


def check_page(browser, url):
    """Problems found on one page, as sentences."""
    browser.get(url)
    problems = []
    if not browser.execute_async_script(_WAIT_FOR_PAGE):
        problems.append("MathJax failed to typeset")
    text = browser.execute_script(_VISIBLE_PROSE)
    for tex in RAW_TEX:
        if tex in text:
            at = text.index(tex)
            snippet = " ".join(text[max(at - 30, 0) : at + 50].split())
            problems.append(f"raw TeX {tex!r} in the visible text: ...{snippet}...")
    for src in browser.execute_script(_BROKEN_IMAGES):
        problems.append(f"image did not load: {src}")
    for entry in browser.get_log("browser"):
        if entry["level"] == "SEVERE":
            problems.append(f"console error: {entry['message']}")
    return problems


def pages(html_dir):
    """Every HTML page of the site except Sphinx's own search and index pages."""
    skip = {"search.html", "genindex.html", "py-modindex.html"}
    return sorted(
        path.relative_to(html_dir).as_posix()
        for path in html_dir.rglob("*.html")
        if not path.relative_to(html_dir).parts[0].startswith("_")
        and path.name not in skip
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=DOCS / "_build" / "html")
    parser.add_argument(
        "--screenshots", type=Path, default=DOCS / "_build" / "screenshots"
    )
    args = parser.parse_args(argv)
    server = serve(args.html)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    browser = make_browser()
    failures = {}
    try:
        page_list = pages(args.html)
        for page in page_list:
            problems = check_page(browser, base + page)
            if problems:
                failures[page] = problems
            if page in SCREENSHOTS:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                browser.save_screenshot(str(args.screenshots / SCREENSHOTS[page]))
    finally:
        browser.quit()
        server.shutdown()
    missing = set(SCREENSHOTS) - set(page_list)
    for page in sorted(missing):
        failures[page] = ["page missing, no screenshot taken"]
    for page, problems in failures.items():
        print(f"{page}:")
        for problem in problems:
            print(f"  {problem}")
    print(
        f"checked {len(page_list)} pages in headless Chromium: "
        f"{len(failures)} with problems; screenshots in {args.screenshots}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
