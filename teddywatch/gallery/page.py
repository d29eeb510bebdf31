"""The gallery page's HTML, style and script: `render(results, thumbs, version)`.

Every file name and label comes from the user's disk, so every one goes through html.escape.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from collections import Counter
from pathlib import Path

from teddywatch.results import ERROR, Result, format_confidence

VERSION_NAME = "gallery-version.js"
RELOAD_CHECK_MS = 2000  # how often an open page looks for a newer version of itself


def thumb_key(result: Result) -> str:
    """Cache key: the same path with a new size or mtime is a new picture."""
    raw = f"{result.path}\0{result.size}\0{result.mtime_ns}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw).hexdigest()[:32]

def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _file_uri(path: str) -> str:
    try:
        return Path(path).absolute().as_uri()
    except ValueError:
        return ""


def render(results: list[Result], thumbs: dict[str, str | None], version: str = "") -> str:
    """The whole page for `results` (already newest first); `thumbs` maps thumb_key to a src."""
    counts = Counter(r.label for r in results)
    buttons = [f'<button type="button" data-label="" aria-pressed="true">all '
               f'<span>{len(results)}</span></button>']
    buttons += [f'<button type="button" data-label="{_e(label)}" aria-pressed="false">'
                f'{_e(label)} <span>{count}</span></button>'
                for label, count in sorted(counts.items())]
    cards = "\n".join(_card(r, thumbs.get(thumb_key(r))) for r in results)
    empty = "" if results else '<p class="empty">No results yet: drop an image into a ' \
        'watched folder.</p>'
    script = _SCRIPT.replace("__VERSION__", json.dumps(version)) \
        .replace("__VERSION_FILE__", json.dumps(VERSION_NAME)) \
        .replace("__CHECK_MS__", str(RELOAD_CHECK_MS))
    return _PAGE.format(count=len(results), buttons="\n".join(buttons), cards=cards,
                        empty=empty, style=_STYLE, script=script)


def _card(result: Result, thumb: str | None) -> str:
    where = result.moved_to or result.path
    name = os.path.basename(where) or where
    picture = (f'<img src="{_e(thumb)}" alt="{_e(name)}">' if thumb
               else '<span class="nothumb">no preview</span>')
    uri = _file_uri(where)
    if uri:
        picture = f'<a href="{_e(uri)}">{picture}</a>'
    # Formatted here, not in the page's script: the same figure as the tray and notifications.
    shown = "" if result.status == ERROR else \
        f' <span class="confidence">{_e(format_confidence(result.confidence))}</span>'
    detail = f'<span class="detail">{_e(result.detail)}</span>' if result.detail else ""
    stamp = result.time
    return (f'<figure class="card {_e(result.status)}" data-label="{_e(result.label)}">'
            f'{picture}<figcaption><b>{_e(result.label)}</b>{shown} '
            f'<span class="status">{_e(result.status)}</span>'
            f'<span class="name" title="{_e(where)}">{_e(name)}</span>'
            f'<time datetime="{_e(stamp.isoformat())}">{_e(stamp.strftime("%Y-%m-%d %H:%M:%S"))}'
            f'</time>{detail}</figcaption></figure>')


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>teddywatch: the last {count} results</title>
<style>{style}</style>
</head>
<body>
<header><h1>teddywatch</h1><p>The last {count} results, newest first.</p>
<nav id="filters" aria-label="Filter by label">
{buttons}
</nav></header>
{empty}
<main id="cards">
{cards}
</main>
<script>{script}</script>
</body>
</html>
"""

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 0 1.5em 2em; background: #faf8f5; color: #222; }
header h1 { margin: .6em 0 0; font-size: 1.4em; } header p { margin: .2em 0 .6em; color: #666; }
#filters button { border: 1px solid #bbb; background: #fff; border-radius: 1em; padding: .2em .8em;
  margin: 0 .3em .3em 0; cursor: pointer; font: inherit; }
#filters button[aria-pressed="true"] { background: #8b5e3c; color: #fff; border-color: #8b5e3c; }
#filters span { opacity: .7; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 12px; }
.card { margin: 0; background: #fff; border: 1px solid #e2ddd6; border-radius: 8px; padding: 8px; }
.card img, .nothumb { display: block; width: 160px; height: 160px; object-fit: contain;
  margin: 0 auto 6px; }
.nothumb { background: #eee; color: #888; line-height: 160px; text-align: center; }
figcaption { display: flex; flex-wrap: wrap; gap: 0 .4em; align-items: baseline; }
.status { font-size: .8em; padding: 0 .4em; border-radius: .6em; background: #dfe; }
.unsure .status { background: #ffe9b0; } .error .status { background: #fcc; }
.name, time, .detail { flex-basis: 100%; font-size: .85em; color: #555; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.detail { color: #a33; white-space: normal; }
[hidden] { display: none !important; }
"""

# Plain JS: a button per label shows only that label's cards (kept across reloads), and the page
# reloads itself when teddywatch rewrote it: every few seconds it loads gallery-version.js (a
# <script>, which file:// pages may load where fetch() is refused) and compares versions.
_SCRIPT = """
(function () {
  var buttons = document.querySelectorAll('#filters button');
  var cards = document.querySelectorAll('#cards .card');
  function show(want) {
    buttons.forEach(function (b) { b.setAttribute('aria-pressed', String(b.dataset.label === want)); });
    cards.forEach(function (card) { card.hidden = want !== '' && card.dataset.label !== want; });
  }
  buttons.forEach(function (button) {
    button.addEventListener('click', function () {
      try { sessionStorage.setItem('teddywatch-filter', button.dataset.label); } catch (e) {}
      show(button.dataset.label);
    });
  });
  var kept = null;
  try { kept = sessionStorage.getItem('teddywatch-filter'); } catch (e) {}
  if (kept && document.querySelector('#filters button[data-label="' + CSS.escape(kept) + '"]')) {
    show(kept);
  }
  var version = __VERSION__;
  window.teddywatchVersion = function (latest) {
    if (latest !== version) { location.reload(); }
  };
  setInterval(function () {
    var probe = document.createElement('script');
    probe.src = __VERSION_FILE__ + '?' + Date.now();
    probe.onload = probe.onerror = function () { probe.remove(); };
    document.head.appendChild(probe);
  }, __CHECK_MS__);
})();
"""
