#!/usr/bin/env python
"""Check the built book in a real browser (headless Debian ``chromium``), page by page.

For every page of the table of contents the book was built with (``BUILD/src/_toc.yml``):

- the page exists, and loads no script, stylesheet or image from the network;
- figures: every ``<img>`` resolves to a non-empty image, and a chapter page shows at least as
  many images as its executed notebook has image outputs (cells tagged ``remove-output`` or
  ``remove-cell`` excepted);
- math: after the page's scripts ran, every math element holds MathJax output (``mjx-container``)
  and no MathJax error, and no raw ``$$`` is left in the text;
- widgets, where the notebook saved widget state: every widget view became widget DOM
  (``.widget-subarea`` holding ``.jupyter-widgets``), and images kept in Output widgets show;
- a screenshot ``BUILD/screenshots/<page>.png`` for people to look at.

Installs nothing; ``make test`` makes sure ``chromium`` is there. Usage::

    python scripts/check_pages.py [--build _build] [--budget-ms 15000]

Exit status 1 (with one line per problem) when any check fails.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
HIDDEN_OUTPUT_TAGS = {"remove-output", "remove-cell"}
SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"<svg", b"<?xml")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--disable-dev-shm-usage"]


class CheckError(Exception):
    pass


# --------------------------------------------------------------------------- a small DOM

@dataclass
class Node:
    tag: str
    attrs: dict
    parent: Node | None = None
    children: list = field(default_factory=list)  # Node or str

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs):
        for node in self.iter():
            if tag and node.tag != tag:
                continue
            if cls and cls not in node.classes:
                continue
            if any(node.attrs.get(k) != v for k, v in attrs.items()):
                continue
            yield node

    def has_ancestor(self, cls: str) -> bool:
        node = self.parent
        while node is not None:
            if cls in node.classes:
                return True
            node = node.parent
        return False


class _TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.cur))

    def handle_endtag(self, tag):
        node = self.cur
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.cur = node.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse_html(text: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


def visible_text(node: Node) -> str:
    skip = {"script", "style", "code", "pre", "textarea", "noscript", "template"}
    parts = []
    for child in node.children:
        if isinstance(child, str):
            parts.append(child)
        elif child.tag not in skip and "highlight" not in child.classes:
            parts.append(visible_text(child))
    return "".join(parts)


# --------------------------------------------------------------------------- the browser

def find_chromium(explicit: str | None = None) -> str:
    for name in ([explicit] if explicit else []) + [os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser"]:
        if name and shutil.which(name):
            return shutil.which(name)
    raise CheckError("no chromium found; install it (Debian: apt-get update && apt-get install -y chromium; "
                     "`make test` does this) or pass --chromium PATH")


def run_chromium(chromium: str, url: str, extra: list[str], budget_ms: int, timeout_s: float = 120) -> str:
    profile = tempfile.mkdtemp(prefix="inrlib-chromium-")
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise CheckError(f"chromium did not finish {url} within {timeout_s:.0f} s") from None
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if proc.returncode != 0:
        tail = err.decode(errors="replace")[-2000:]
        raise CheckError(f"chromium exited with {proc.returncode} on {url}:\n{tail}")
    return out.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- checks

@dataclass
class PageReport:
    page: str
    html: Path
    screenshot: Path | None = None
    problems: list[str] = field(default_factory=list)
    figures: int = 0
    math: int = 0
    widgets: int = 0
    tables: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def notebook_expectations(nb_path: Path) -> dict:
    """What the executed notebook says the page must show."""
    if not nb_path.is_file():
        return {"images": 0, "widget_views": 0, "widget_state": False, "widget_images": 0}
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    images = views = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code" or HIDDEN_OUTPUT_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                views += 1
            elif any(m in data for m in IMAGE_MIMES):
                images += 1
    state = nb.get("metadata", {}).get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    widget_images = 0
    for model in state.values():
        for out in (model.get("state", {}) or {}).get("outputs", []) or []:
            if any(m in out.get("data", {}) for m in IMAGE_MIMES):
                widget_images += 1
    return {"images": images, "widget_views": views, "widget_state": bool(state), "widget_images": widget_images}


def _image_ok(src: str, page: Path) -> str | None:
    """None when ``src`` is a non-empty image, else what is wrong with it."""
    if src.startswith("data:"):
        header, _, payload = src.partition(",")
        if not payload:
            return "empty data: URI"
        raw = base64.b64decode(payload[:64] + "=" * (-len(payload[:64]) % 4)) if ";base64" in header else payload.encode()
        return None if raw.startswith(SIGNATURES) else f"data: URI is not an image ({header})"
    if src.startswith("blob:"):                 # made by a script in the page (e.g. a widget's image)
        return None
    parts = urlsplit(src)
    if parts.scheme in ("http", "https"):
        return f"loads {src} from the network"
    path = (page.parent / unquote(parts.path)).resolve()
    if not path.is_file() or path.stat().st_size == 0:
        return f"missing or empty image file {path}"
    with path.open("rb") as fh:
        head = fh.read(256).lstrip()
    return None if head.startswith(SIGNATURES) else f"{path.name} is not a PNG/JPEG/GIF/SVG image"


def check_static(report: PageReport, static: Node) -> int:
    """Network-free page; returns the number of math elements Sphinx wrote."""
    for node in static.iter():
        url = node.attrs.get("src") if node.tag in ("script", "img", "iframe") else \
            node.attrs.get("href") if node.tag == "link" and "stylesheet" in node.attrs.get("rel", "") else None
        if url and urlsplit(url).scheme in ("http", "https") or (url or "").startswith("//"):
            report.problems.append(f"loads <{node.tag}> {url} from the network")
    return sum(1 for _ in static.find_all(cls="math"))


def check_dom(report: PageReport, dom: Node, page: Path, static_math: int, expect: dict) -> None:
    # figures
    imgs = [n for n in dom.find_all("img")]
    for img in imgs:
        problem = _image_ok(img.attrs.get("src", ""), page)
        if problem:
            report.problems.append(f"image {img.attrs.get('src', '')[:80]!r}: {problem}")
    output_imgs = [n for n in imgs if not n.has_ancestor("widget-subarea") and (n.has_ancestor("cell_output") or n.has_ancestor("output"))]
    report.figures = len(output_imgs)
    if len(output_imgs) < expect["images"]:
        report.problems.append(f"{len(output_imgs)} figure images on the page, the notebook has {expect['images']} image outputs")
    # tables (Markdown tables in cell outputs and in the text)
    report.tables = sum(1 for t in dom.find_all("table") if not t.has_ancestor("widget-subarea"))
    # math
    maths = list(dom.find_all(cls="math"))
    rendered = [m for m in maths if any(n.tag == "mjx-container" for n in m.iter())]
    report.math = len(rendered)
    if len(maths) < static_math:
        report.problems.append(f"{static_math} math elements in the HTML but {len(maths)} after the scripts ran")
    rendered_ids = {id(m) for m in rendered}        # identity: Node equality would recurse through the tree
    for m in maths:
        if id(m) not in rendered_ids:
            report.problems.append(f"math not rendered by MathJax: {m.text().strip()[:80]!r}")
            break
    if any(True for _ in dom.find_all("mjx-merror")):
        report.problems.append("MathJax reported an error in a formula (mjx-merror)")
    body = next(dom.find_all("body"), dom)
    if "$$" in visible_text(body):
        report.problems.append("raw $$ left in the page text (math that MyST did not parse)")
    # widgets
    views = list(dom.find_all("script", type="application/vnd.jupyter.widget-view+json"))
    areas = [a for a in dom.find_all(cls="widget-subarea") if any("jupyter-widgets" in n.classes for n in a.iter())]
    report.widgets = len(areas)
    if expect["widget_views"]:
        if not expect["widget_state"]:
            report.problems.append(f"the notebook displays {expect['widget_views']} widget(s) but saved no widget state "
                                   "(metadata.widgets); the page cannot render them")
        elif not views:
            report.problems.append("the notebook displays widgets but the page has no widget views")
        if len(areas) < len(views):
            report.problems.append(f"{len(views)} widget views on the page but {len(areas)} rendered by the widget manager "
                                   "(is the vendored embed-amd.js loading?)")
        if expect["widget_images"]:
            widget_imgs = [n for n in imgs if n.has_ancestor("widget-subarea")]
            if not widget_imgs:
                report.problems.append("the widgets' saved outputs hold images but none shows in the rendered widgets")


def page_list(build: Path) -> list[str]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from bookpipe import toc_files  # the toc the HTML was built from

    toc = build / "src" / "_toc.yml"
    if not toc.is_file():
        raise CheckError(f"{toc} not found; build the book first (make book)")
    return [str(Path(e).with_suffix("")) if Path(e).suffix in (".md", ".py", ".rst", ".ipynb") else e
            for e in toc_files(toc)]


def check_pages(build: Path, pages: list[str] | None = None, budget_ms: int = 15000, screenshots: Path | None = None,
                chromium: str | None = None, width: int = 1280, height: int = 9000) -> list[PageReport]:
    build = Path(build).absolute()
    html_root, src_root = build / "html", build / "src"
    screenshots = Path(screenshots) if screenshots else build / "screenshots"
    chromium = find_chromium(chromium)
    reports = []
    for stem in pages or page_list(build):
        page = html_root / f"{stem}.html"
        report = PageReport(stem, page)
        reports.append(report)
        if not page.is_file():
            report.problems.append(f"page {page} does not exist")
            continue
        static_math = check_static(report, parse_html(page.read_text(encoding="utf-8")))
        expect = notebook_expectations(src_root / f"{stem}.ipynb")
        try:
            dom = parse_html(run_chromium(chromium, page.as_uri(), ["--dump-dom"], budget_ms))
            check_dom(report, dom, page, static_math, expect)
            shot = screenshots / f"{stem.replace('/', '__')}.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            tmp = shot.with_name(f".{shot.stem}.tmp.png")
            run_chromium(chromium, page.as_uri(), [f"--screenshot={tmp}", f"--window-size={width},{height}"], budget_ms)
            if not tmp.is_file() or not tmp.read_bytes().startswith(SIGNATURES[0]):
                report.problems.append("chromium wrote no screenshot")
            else:
                os.replace(tmp, shot)
                report.screenshot = shot
        except CheckError as err:
            report.problems.append(str(err))
    return reports


# --------------------------------------------------------------------------- static explorers, clicked

EXPLORER = "inrlib-static-explorer"
PICTURE = "inrlib-explorer-picture"

_VISIBLE_PICTURE_JS = """
const root = arguments[0];
for (const el of root.querySelectorAll('.PICTURE img')) {
  const r = el.getBoundingClientRect();
  if (r.width > 0 && r.height > 0 && el.offsetParent !== null) return el.getAttribute('src').slice(-200);
}
return null;
""".replace("PICTURE", PICTURE)


def find_chromedriver() -> str:
    for name in (os.environ.get("CHROMEDRIVER", ""), "chromedriver", "/usr/lib/chromium/chromedriver"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise CheckError("no chromedriver found; install it (Debian: apt-get install -y chromium-driver; `make test` "
                     "does this) or set CHROMEDRIVER")


def _driver(chromium: str, width: int, height: int):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise CheckError("selenium is not installed; pip install selenium (it is in the test extra)") from None
    opts = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--window-size={width},{height}")
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='inrlib-selenium-')}")
    opts.binary_location = chromium
    return webdriver.Chrome(service=Service(find_chromedriver()), options=opts)


def _move(driver, control) -> str:
    """Change one control the way a person would: the next option of a <select>, or the arrow keys on a
    slider's handle. Returns what was done."""
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select
    if control.tag_name == "select":
        sel = Select(control)
        n = len(sel.options)
        current = [o.get_attribute("value") for o in sel.options].index(sel.first_selected_option.get_attribute("value"))
        sel.select_by_index((current + 1) % n)
        return f"select option {(current + 1) % n}"
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", control)
    control.click()
    before = control.get_attribute("aria-valuenow")
    control.send_keys(Keys.ARROW_RIGHT)
    if control.get_attribute("aria-valuenow") == before:
        control.send_keys(Keys.ARROW_LEFT)
    return "slider arrow key"


def check_explorers(page: Path, chromium: str | None = None, *, screenshot: Path | None = None, timeout_s: float = 60,
                    width: int = 1280, height: int = 2000) -> dict:
    """Open ``page`` in headless Chromium through Selenium and move every control of every static
    explorer (class ``inrlib-static-explorer``): each move must change the picture shown, with no
    kernel. Returns ``{"explorers", "moves", "problems"}``; a screenshot of the first explorer after
    its moves goes to ``screenshot``."""
    import time as _time

    from selenium.webdriver.common.by import By

    chromium = find_chromium(chromium)
    out = {"explorers": 0, "moves": 0, "problems": []}
    driver = _driver(chromium, width, height)
    try:
        driver.get(Path(page).absolute().as_uri())
        deadline = _time.time() + timeout_s
        roots = []
        while _time.time() < deadline:
            roots = [r for r in driver.find_elements(By.CSS_SELECTOR, f".{EXPLORER}")
                     if not driver.execute_script(f"return arguments[0].parentElement.closest('.{EXPLORER}') !== null", r)]
            if roots and all(driver.execute_script(_VISIBLE_PICTURE_JS, r) for r in roots):
                break
            _time.sleep(0.25)
        if not roots:
            out["problems"].append("no static explorer rendered on the page (is the widget state saved?)")
            return out
        out["explorers"] = len(roots)
        for k, root in enumerate(roots):
            done = set()
            while True:      # the controls shown change as a choice stack switches: take them as they come
                controls = [c for c in root.find_elements(By.CSS_SELECTOR, "select, .noUi-handle")
                            if c.is_displayed() and c.id not in done]
                if not controls:
                    break
                control = controls[0]
                done.add(control.id)
                before = driver.execute_script(_VISIBLE_PICTURE_JS, root)
                what = _move(driver, control)
                t_end = _time.time() + 10
                after = before
                while _time.time() < t_end and after == before:
                    _time.sleep(0.1)
                    after = driver.execute_script(_VISIBLE_PICTURE_JS, root)
                out["moves"] += 1
                if after is None:
                    out["problems"].append(f"explorer {k}: after '{what}' no picture is shown")
                elif after == before:
                    out["problems"].append(f"explorer {k}: '{what}' did not change the picture shown")
            if k == 0 and screenshot is not None:
                driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", root)
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="check the built book's pages in headless chromium")
    ap.add_argument("--build", type=Path, default=ROOT / "_build", help="build folder (holds html/ and src/)")
    ap.add_argument("--page", action="append", help="check only this page (e.g. book/theory); repeatable")
    ap.add_argument("--budget-ms", type=int, default=15000, help="virtual time the page's scripts get")
    ap.add_argument("--screenshots", type=Path, default=None, help="default BUILD/screenshots")
    ap.add_argument("--chromium", default=None)
    ap.add_argument("--width", type=int, default=1280, help="screenshot width (px)")
    ap.add_argument("--height", type=int, default=9000, help="screenshot height (px; the top of the page)")
    args = ap.parse_args(argv)
    try:
        reports = check_pages(args.build, args.page, args.budget_ms, args.screenshots, args.chromium,
                              args.width, args.height)
    except CheckError as err:
        print(f"check_pages: error: {err}", file=sys.stderr)
        return 1
    bad = 0
    for r in reports:
        status = "ok  " if r.ok else "FAIL"
        print(f"{status} {r.page}: {r.figures} figures, {r.math} formulas, {r.widgets} widgets"
              + (f", screenshot {r.screenshot}" if r.screenshot else ""))
        for problem in r.problems:
            print(f"     - {problem}")
        bad += not r.ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
