"""What the browser tests share: Debian's Chromium, a local web server, and MathJax without a network.

The ``browser`` fixture itself lives in conftest.py; it skips, saying why, where Chromium or
Playwright is missing.
"""

import threading
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"  # screenshots; git-ignored
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

# Sphinx loads MathJax 3 from this CDN (mathjax_path's default); the tests have no network.
MATHJAX_CDN = "/npm/mathjax@3/es5/"


@contextmanager
def serve(directory: Path):
    """Serve ``directory`` on 127.0.0.1 at a free port (http.server, in a thread); yield the base URL."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def local_mathjax() -> Path | None:
    """MathJax 3's es5 folder, as the ``sphinx-mathjax-offline`` package ships it (3.2.2, the
    version the CDN's ``mathjax@3`` serves); None where that package is not installed."""
    try:
        folder = Path(distribution("sphinx-mathjax-offline").locate_file("sphinx-mathjax-offline/static/mathjax"))
    except PackageNotFoundError:
        return None
    return folder if (folder / "tex-mml-chtml.js").is_file() else None


def route_offline(page, base: str) -> None:
    """Let ``page`` load what ``base`` serves, answer MathJax's CDN from the local copy, refuse the rest.

    Without a local copy, MathJax's requests go out as they are: they work where there is a network.
    """
    mathjax = local_mathjax()

    def handle(route):
        url = route.request.url
        if url.startswith(base):
            return route.continue_()
        if MATHJAX_CDN in url:
            if mathjax is None:
                return route.continue_()
            wanted = (mathjax / url.split(MATHJAX_CDN, 1)[1].split("?")[0].split("#")[0]).resolve()
            if wanted.is_file() and wanted.is_relative_to(mathjax.resolve()):
                return route.fulfill(path=str(wanted))
            return route.fulfill(status=404)
        return route.abort()

    page.route("**/*", handle)
