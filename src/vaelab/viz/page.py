"""The report page's parts that are not about a run: its style sheet, HTML escaping, and figures embedded as
data: URIs in cards (a figure that cannot be drawn becomes its one-line note), and a card of several images
behind a selector (`selector_html`), so the page stays one self-contained file (`vaelab.viz.report`).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError

PAGE_CSS = """
:root { --ink: #1d2433; --muted: #6b7385; --line: #e2e5eb; --bg: #f4f5f7; --accent: #3056d3; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 40px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; color: var(--muted); }
h2 { margin: 34px 0 12px; font-size: 18px; border-bottom: 1px solid var(--line); padding-bottom: 6px; }
h3 { margin: 0 0 8px; font-size: 14px; }
code { font: 12px ui-monospace, "DejaVu Sans Mono", Menlo, monospace; background: #eceef2; padding: 1px 4px;
  border-radius: 4px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px;
  margin: 0 0 16px; box-shadow: 0 1px 2px rgba(16, 24, 40, 0.05); }
figure.card img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 8px; }
.cols { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; margin-bottom: 16px; }
.cols > * { flex: 1 1 340px; margin: 0; min-width: 0; }
.cols > .narrow { flex: 0 1 400px; }
.stats { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 18px; }
.stat { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 10px 16px; min-width: 150px; }
.stat .label { color: var(--muted); font-size: 12px; }
.stat .value { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums; }
.stat .unit { color: var(--muted); font-size: 11.5px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.kv th { text-align: left; font-weight: 500; color: var(--muted); padding: 2px 14px 2px 0;
  vertical-align: top; }
table.kv td { padding: 2px 0; word-break: break-word; }
table.grid { width: 100%; background: #fff; border: 1px solid var(--line); border-radius: 10px;
  margin-bottom: 16px; }
table.grid th, table.grid td { padding: 7px 12px; border-bottom: 1px solid var(--line); text-align: right; }
table.grid th:first-child, table.grid th:last-child, table.grid td:last-child { text-align: left; }
table.grid tr:first-child th { background: #f8f9fb; color: var(--muted); font-weight: 600; font-size: 12.5px; }
.meta { color: var(--muted); }
.note { color: var(--muted); font-style: italic; }
.warn { background: #fff4e5; border: 1px solid #f7d4a8; color: #7a3e00; border-radius: 10px; padding: 10px 14px; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; }
[hidden] { display: none !important; }
.pickrow { display: flex; flex-wrap: wrap; align-items: baseline; gap: 12px; margin-bottom: 8px; }
.pickrow h3 { margin: 0; }
.pick, .pick-static { color: var(--muted); font-size: 12.5px; }
.views img { max-width: 100%; height: auto; display: block; margin: 0 auto; image-rendering: pixelated; }
.views .note { text-align: center; margin: 6px 0 0; }
"""

# The selector's script: show the view whose data-view is the picked value (run once at load, so a value the
# browser restores is honoured). Without script the selector stays hidden and the first view shows.
SELECT_SCRIPT = """(function () {
  var card = document.getElementById(%s), pick = card.querySelector("select");
  function show() {
    card.querySelectorAll("[data-view]").forEach(function (v) { v.hidden = v.dataset.view !== pick.value; });
  }
  card.querySelector(".pick").hidden = false;
  card.querySelector(".pick-static").hidden = true;
  pick.addEventListener("change", show);
  show();
})();"""


def esc(v: Any) -> str:
    """`v` as HTML text (quotes escaped too).

    Args:
        v: any value, shown by str().
    """
    return html.escape(str(v), quote=True)


def png_uri(path: Path) -> str:
    """A PNG file as a data: URI, to embed in the page.

    Args:
        path: the PNG.
    """
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def figure_html(uri: str | None, title: str, caption: str, note: str | None = None) -> str:
    """A figure card: its title, the embedded image (or the note saying why there is none) and its caption.

    Args:
        uri: the image's data: URI, or None when it was not drawn.
        title: the card's heading.
        caption: what the figure shows.
        note: why it was not drawn.
    """
    body = (
        f'<img src="{uri}" alt="{esc(title)}">' if uri else f'<p class="note">{esc(note or "not drawn")}</p>'
    )
    return f'<figure class="card"><h3>{esc(title)}</h3>{body}<figcaption>{esc(caption)}</figcaption></figure>'


def draw(tmp: Path, key: str, make: Callable[[Path], Path | None], notes: dict[str, str]) -> str | None:
    """Draw one figure into tmp/KEY.png and embed it (None when there is nothing to draw); a failure becomes
    notes[key], one line.

    Args:
        tmp: a scratch folder.
        key: the figure's name.
        make: draws the figure into the path it is given.
        notes: where a failure's line goes.
    """
    try:
        drawn = make(tmp / f"{key}.png")
        return None if drawn is None else png_uri(drawn)
    except VaelabError as e:  # NotDrawn among them: the figure's own line
        notes[key] = f"not drawn: {' '.join(str(e).split())}"
        return None
    except (ValueError, RuntimeError) as e:  # not foreseen: one line, not the page
        first = next((line for line in str(e).splitlines() if line.strip()), "")
        notes[key] = f"not drawn: {type(e).__name__} ({first.strip()[:200]})"
        return None


def selector_html(
    key: str,
    title: str,
    what: str,
    views: Sequence[tuple[str, str, Sequence[str]]],
    caption: str,
    width: int | None = None,
) -> str:
    """A figure card with one embedded image per value and a <select> beside the title that shows one at a
    time (a few lines of inline script); without script the first image shows, named beside the title.

    Args:
        key: the card's element id (letters, digits and dashes).
        title: the card's heading.
        what: the selector's name ("label y").
        views: (value, image data: URI, notes under the image) per value, in the selector's order.
        caption: what the figure shows.
        width: the images' shown width in screen pixels (None: their own).
    """
    size = "" if width is None else f' width="{int(width)}"'
    options = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v, _, _ in views)
    shown = "".join(
        f'<div data-view="{esc(v)}"{" hidden" if i else ""}><img src="{uri}"{size} alt="{esc(title)}, '
        f'{esc(what)} = {esc(v)}">' + "".join(f'<p class="note">{esc(n)}</p>' for n in notes) + "</div>"
        for i, (v, uri, notes) in enumerate(views)
    )
    first = views[0][0] if views else ""
    return (
        f'<figure class="card" id="{esc(key)}"><div class="pickrow"><h3>{esc(title)}</h3>'
        f'<label class="pick" hidden>{esc(what)} <select>{options}</select></label>'
        f'<span class="pick-static">{esc(what)} = {esc(first)}</span></div>'
        f'<div class="views">{shown}</div><figcaption>{esc(caption)}</figcaption>'
        f"<script>{SELECT_SCRIPT % json.dumps(key)}</script></figure>"
    )
