"""Every page of the built book fits its screen, on a laptop and on a phone.

The book is built once (the ``built_book`` fixture), served on 127.0.0.1, and every page of it
(all its .html files but genindex, search, _static and the redirecting index.html) is opened in
headless Chromium: one tab 1280 px wide, then one tab 390 px wide (a phone), each reused for
every page. Folded content (``<details>``, toggled blocks) is unfolded first, so that what a
reader can open is checked too. The test fails, naming page, width and each offender:

- at 1280 px, where a display equation is wider than its box (MathJax 3 puts it in an
  ``mjx-container`` inside ``div.math``; the theme makes that container scroll sideways, so the
  equation reads clipped): the element's scrollWidth exceeds its clientWidth;
- at either width, where the page itself scrolls sideways: the document is wider than the
  window. What sticks out of a box that scrolls on its own (a table's wrapper, a code block, a
  display equation's container) does not count: it does not widen the page. The report lists
  the outermost elements that stick out past the right edge of the screen.

A full-page screenshot of every page at both widths goes to
``tests/artifacts/pages-WIDTH-PAGE.png`` (git-ignored), e.g. ``pages-390-book-intro.png``.

Sphinx loads MathJax 3 from a CDN and the tests have no network: ``chromium.route_offline``
answers those requests from the copy of MathJax 3.2.2 that the ``sphinx-mathjax-offline`` package
ships. The test skips, saying why, only where Chromium or Playwright is missing.
"""

import re
import time
from pathlib import Path

import pytest

from chromium import ARTIFACTS, ROOT, local_mathjax, route_offline, serve

VIEWPORTS = [
    {"width": 1280, "height": 900},
    {"width": 390, "height": 844},  # a phone's screen, in CSS pixels
]
MATHJAX_TIMEOUT_MS = 20_000
SHOWN = 30  # offenders listed per page and check; the rest are counted


def _pages(html: Path) -> list[str]:
    """The book's pages, as paths relative to ``html``."""
    pages = []
    for file in sorted(html.rglob("*.html")):
        rel = file.relative_to(html)
        if "_static" in rel.parts or rel.name in ("genindex.html", "search.html"):
            continue
        text = file.read_text(encoding="utf-8", errors="replace")
        if re.search(r'http-equiv="refresh"', text, re.I) and "<main" not in text:
            continue  # index.html: only a redirect to the first page
        pages.append(rel.as_posix())
    return pages


def screenshot_path(width: int, page: str) -> Path:
    """tests/artifacts/pages-1280-book-01_forward_process.png for book/01_forward_process.html."""
    return ARTIFACTS / f"pages-{width}-{page.removesuffix('.html').replace('/', '-')}.png"


# Open every fold, wait for web fonts and two frames: the layout a reader sees, settled.
UNFOLD = """async () => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  await document.fonts.ready;
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
}"""

# Every display equation: a div.math, or a display mjx-container outside one. For each, the
# worst of its boxes (the div, the containers in it) whose content is wider than the box.
EQUATIONS = """() => {
  const tex = new Map();
  const doc = window.MathJax && MathJax.startup && MathJax.startup.document;
  if (doc && doc.math) for (const item of doc.math) if (item.typesetRoot) tex.set(item.typesetRoot, item.math);
  const owners = [...document.querySelectorAll('div.math')];
  for (const c of document.querySelectorAll('mjx-container[display="true"]'))
    if (!c.closest('div.math')) owners.push(c);
  const result = {checked: owners.length, untypeset: [], overflowing: []};
  for (const eq of owners) {
    const containers = eq.matches('mjx-container') ? [eq] : [...eq.querySelectorAll('mjx-container')];
    const source = containers.length ? (tex.get(containers[0]) || containers[0].textContent) : eq.textContent;
    const eqno = eq.querySelector('.eqno');
    const what = {
      id: eq.id || '',
      eqno: eqno ? eqno.firstChild.textContent.trim() : '',
      section: (eq.closest('section[id]') || {}).id || '',
      text: source.replace(/\\s+/g, ' ').trim().slice(0, 80),
    };
    if (!containers.length) { result.untypeset.push(what); continue; }
    let worst = null;
    for (const box of [eq, ...containers]) {
      if (box.clientWidth > 0 && box.scrollWidth > box.clientWidth + 1
          && (!worst || box.scrollWidth - box.clientWidth > worst.scroll - worst.client))
        worst = {...what, scroll: box.scrollWidth, client: box.clientWidth,
                 box: box.tagName.toLowerCase() + (box.className ? '.' + box.className.split(' ')[0] : '')};
    }
    if (worst) result.overflowing.push(worst);
  }
  return result;
}"""

# The document's width; where it is wider than the window, the outermost elements that stick out
# past the window's right edge and are not inside a box that clips or scrolls (nor a fixed one).
PAGE_WIDTH = """() => {
  const W = window.innerWidth, page = document.documentElement.scrollWidth;
  const result = {window: W, page: page, offenders: []};
  if (page <= W + 1) return result;
  const contained = e => {
    for (let a = e; a && a !== document.body && a !== document.documentElement; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (s.position === 'fixed') return true;
      if (a !== e && s.overflowX !== 'visible') return true;
    }
    return false;
  };
  const sticksOut = e => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.right + window.scrollX > W + 1;
  };
  const seen = new Map();
  for (const e of document.body.querySelectorAll('*')) {
    if (!sticksOut(e) || contained(e)) continue;
    const p = e.parentElement;
    if (p && p !== document.body && sticksOut(p) && !contained(p)) continue;  // its parent is reported
    const r = e.getBoundingClientRect();
    const o = {
      tag: e.tagName.toLowerCase(),
      cls: typeof e.className === 'string' ? e.className.trim().replace(/\\s+/g, ' ') : '',
      id: e.id || '',
      section: (e.closest('section[id]') || {}).id || '',
      left: Math.round(r.left + window.scrollX), right: Math.round(r.right + window.scrollX),
      text: e.textContent.replace(/\\s+/g, ' ').trim().slice(0, 80),
      count: 1,
    };
    const key = [o.tag, o.cls, o.text].join('|');
    if (seen.has(key)) { const s = seen.get(key); s.count += 1; s.right = Math.max(s.right, o.right); }
    else seen.set(key, o);
  }
  result.offenders = [...seen.values()].sort((a, b) => b.right - a.right);
  return result;
}"""


def _open(tab, url: str) -> None:
    """Load ``url``, let MathJax typeset it (where the page loads MathJax), unfold every fold."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    tab.goto(url, wait_until="load")
    if tab.evaluate("() => !!document.querySelector('script[src*=\"mathjax\" i]')"):
        try:
            tab.wait_for_function(
                "() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=MATHJAX_TIMEOUT_MS
            )
            tab.evaluate("() => MathJax.startup.promise")
        except PlaywrightTimeout:
            where = (
                f"the copy in {local_mathjax()} did not load"
                if local_mathjax()
                else "its CDN is out of reach and there is no local copy: pip install sphinx-mathjax-offline"
            )
            pytest.fail(f"MathJax did not typeset {url} within {MATHJAX_TIMEOUT_MS / 1000:g} s: {where}")
    tab.evaluate(UNFOLD)


def _equation_problems(tab) -> list[str]:
    found = tab.evaluate(EQUATIONS)
    lines = []
    for eq in found["untypeset"]:
        lines.append(f"not typeset by MathJax: {_label(eq)}: {eq['text']}")
    if found["overflowing"]:
        n, checked = len(found["overflowing"]), found["checked"]
        lines.append(f"{n} of {checked} display equations are wider than their box:")
        for eq in found["overflowing"][:SHOWN]:
            lines.append(
                f"  {_label(eq)}: {eq['scroll']} px of math in a {eq['client']} px box "
                f"({eq['box']}, {eq['scroll'] - eq['client']} px clipped): {eq['text']}"
            )
        if len(found["overflowing"]) > SHOWN:
            lines.append(f"  … and {len(found['overflowing']) - SHOWN} more")
    return lines


def _label(eq: dict) -> str:
    parts = [eq["eqno"], f"#{eq['id']}" if eq["id"] else "(unlabelled)"]
    if eq["section"]:
        parts.append(f"in section #{eq['section']}")
    return " ".join(p for p in parts if p)


def _width_problems(tab) -> list[str]:
    found = tab.evaluate(PAGE_WIDTH)
    if found["page"] <= found["window"] + 1:
        return []
    lines = [
        f"the page is {found['page']} px wide in a {found['window']} px window: it scrolls sideways. "
        "Sticking out past the right edge:"
    ]
    for o in found["offenders"][:SHOWN]:
        attrs = (f' id="{o["id"]}"' if o["id"] else "") + (f' class="{o["cls"]}"' if o["cls"] else "")
        element = f"<{o['tag']}{attrs}>"
        where = f" in section #{o['section']}" if o["section"] else ""
        times = f" (×{o['count']})" if o["count"] > 1 else ""
        lines.append(f"  {element}{times}{where}: x {o['left']} … {o['right']} px: {o['text']!r}")
    if len(found["offenders"]) > SHOWN:
        lines.append(f"  … and {len(found['offenders']) - SHOWN} more")
    if not found["offenders"]:
        lines.append("  (no single element found: look at the screenshot)")
    return lines


def test_every_page_fits_a_laptop_and_a_phone_screen(browser, built_book):
    """No display equation clipped at 1280 px; no page that scrolls sideways at 1280 or 390 px."""
    pages = _pages(built_book)
    assert len(pages) >= 5, f"too few pages in the built book: {pages}"
    ARTIFACTS.mkdir(exist_ok=True)
    problems, start = [], time.monotonic()
    with serve(built_book) as base:
        for viewport in VIEWPORTS:
            width = viewport["width"]
            tab = browser.new_page(viewport=viewport, device_scale_factor=1)
            try:
                route_offline(tab, base)
                for page in pages:
                    _open(tab, f"{base}/{page}")
                    lines = _width_problems(tab)
                    if width >= 1000:
                        lines = _equation_problems(tab) + lines
                    shot = screenshot_path(width, page)
                    tab.screenshot(path=str(shot), full_page=True)
                    if lines:
                        shot = shot.relative_to(ROOT) if shot.is_relative_to(ROOT) else shot
                        body = "\n".join(f"  {line}" for line in lines)
                        problems.append(f"{page} at {width} px (screenshot: {shot}):\n{body}")
            finally:
                tab.close()
    elapsed = time.monotonic() - start
    print(f"{len(pages)} pages at {len(VIEWPORTS)} widths in {elapsed:.1f} s; screenshots in {ARTIFACTS}")
    if problems:
        report = "\n\n".join(problems)
        pytest.fail(f"{len(problems)} page views do not fit their screen:\n\n{report}", pytrace=False)


SHOWN_JS = """id => {
  const e = document.getElementById(id);
  return !!e && !e.closest('.toggle-hidden') && getComputedStyle(e).visibility === 'visible'
    && e.getBoundingClientRect().height > 0;
}"""


def test_a_link_into_a_closed_solution_opens_it(browser, built_book):
    """Equations inside an exercise's hidden solution are linked from the notebook; following such a link must show
    the equation (the solution opened), not the empty frame of a closed box. Checked without unfolding anything."""
    with serve(built_book) as base:
        tab = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        try:
            route_offline(tab, base)
            for anchor in ("equation-first-reverse-v", "equation-first-tilt"):
                tab.goto(f"{base}/book/00_first_ddpm.html#{anchor}", wait_until="load")
                tab.wait_for_function(SHOWN_JS, arg=anchor, timeout=10_000)
                box = tab.evaluate("id => { const r = document.getElementById(id).getBoundingClientRect();"
                                   " return [r.top, r.height] }", anchor)
                assert box[1] > 0 and 0 <= box[0] < 900, f"#{anchor} is not shown after following a link: {box}"
            # and a link followed on the page itself (a hash change)
            tab.goto(f"{base}/book/00_first_ddpm.html", wait_until="load")
            tab.evaluate("() => { location.hash = 'equation-first-reverse-v' }")
            tab.wait_for_function(SHOWN_JS, arg="equation-first-reverse-v", timeout=10_000)
        finally:
            tab.close()
