"""The gallery page's HTML, style and script: `render(results, thumbs, version, live=None)`.

The same page twice: the static file in the data dir (`live=None`: a picture links to the file,
the page watches `gallery-version.js` beside it), and the page the gallery server serves
(`live=Live(...)`: each card has a "wrong?" control that posts the right label to the server,
the page asks the server for its version, pictures come from the server too). Every file name
and label comes from the user's disk, so every one goes through html.escape; the script reads
them from the page, never from a string built here.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from teddywatch.csvcells import printable
from teddywatch.results import ERROR, Result, format_confidence

VERSION_NAME = "gallery-version.js"
RELOAD_CHECK_MS = 2000  # how often an open page looks for a newer version of itself


def thumb_key(result: Result) -> str:
    """Cache key: the same path with a new size or mtime is a new picture. The served page names
    a card (and its picture) by it."""
    raw = f"{result.path}\0{result.size}\0{result.mtime_ns}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True)
class Live:
    """What the served page adds to the static one."""

    labels: tuple[str, ...]                     # what a result can be corrected to
    corrected: Mapping[str, str] = field(default_factory=dict)  # thumb_key -> label, shown now
    nonce: str = ""                             # the Content-Security-Policy nonce of this page


def _e(value: object) -> str:
    """HTML-escaped, and a name that is not UTF-8 shown with its odd bytes as \\xff (the page
    is UTF-8: such a name could not be written at all)."""
    return html.escape(printable(str(value)), quote=True)


def _file_uri(path: str) -> str:
    try:
        return Path(path).absolute().as_uri()
    except ValueError:
        return ""


def render(results: list[Result], thumbs: dict[str, str | None], version: str = "",
           live: Live | None = None) -> str:
    """The whole page for `results` (already newest first); `thumbs` maps thumb_key to a src
    relative to the page."""
    counts = Counter(r.label for r in results)
    buttons = [f'<button type="button" data-label="" aria-pressed="true">all '
               f'<span>{len(results)}</span></button>']
    buttons += [f'<button type="button" data-label="{_e(label)}" aria-pressed="false">'
                f'{_e(label)} <span>{count}</span></button>'
                for label, count in sorted(counts.items())]
    cards = "\n".join(_card(r, thumbs.get(thumb_key(r)), live) for r in results)
    empty = "" if results else '<p class="empty">No results yet: drop an image into a ' \
        'watched folder.</p>'
    script = _SCRIPT + (_LIVE_SCRIPT if live else _STATIC_SCRIPT)
    script = script.replace("__VERSION__", json.dumps(version)) \
        .replace("__VERSION_FILE__", json.dumps(VERSION_NAME)) \
        .replace("__CHECK_MS__", str(RELOAD_CHECK_MS))
    nonce = f' nonce="{_e(live.nonce)}"' if live and live.nonce else ""
    return _PAGE.format(count=len(results), buttons="\n".join(buttons), cards=cards,
                        empty=empty, style=_STYLE, script=f"(function () {{{script}}})();",
                        nonce=nonce, teach=_LIVE_HEADER if live else "")


def _card(result: Result, thumb: str | None, live: Live | None) -> str:
    key = thumb_key(result)
    where = result.moved_to or result.path
    name = os.path.basename(where) or where
    picture = (f'<img src="{_e(thumb)}" alt="{_e(name)}">' if thumb
               else '<span class="nothumb">no preview</span>')
    # The served page cannot link to file:// (browsers refuse it): the server sends the picture
    # (one it could make a thumbnail of).
    uri = (f"picture/{key}" if thumb else "") if live else _file_uri(where)
    if uri:
        picture = f'<a href="{_e(uri)}">{picture}</a>'
    # Formatted here, not in the page's script: the same figure as the tray and notifications.
    shown = "" if result.status == ERROR else \
        f' <span class="confidence">{_e(format_confidence(result.confidence))}</span>'
    detail = f'<span class="detail">{_e(result.detail)}</span>' if result.detail else ""
    model = (f'<span class="model" title="the model that answered">{_e(result.model)}</span>'
             if result.model else "")
    teach = _teach(key, live) if live and result.status != ERROR else ""
    stamp = result.time
    return (f'<figure class="card {_e(result.status)}" data-label="{_e(result.label)}" '
            f'data-key="{key}">'
            f'{picture}<figcaption><b>{_e(result.label)}</b>{shown} '
            f'<span class="status">{_e(result.status)}</span>'
            f'<span class="name" title="{_e(where)}">{_e(name)}</span>'
            f'<time datetime="{_e(stamp.isoformat())}">{_e(stamp.strftime("%Y-%m-%d %H:%M:%S"))}'
            f'</time>{model}{detail}</figcaption>{teach}</figure>')


def _teach(key: str, live: Live) -> str:
    """The "wrong?" control: the right label and a button; once corrected, what to and undo."""
    corrected = live.corrected.get(key, "")
    options = "".join(f'<option value="{_e(label)}">{_e(label)}</option>'
                      for label in live.labels)
    return (f'<div class="teach" data-corrected="{_e(corrected)}">'
            f'<span class="fixed">corrected to <b>{_e(corrected)}</b> '
            f'<button type="button" class="undo">undo</button></span>'
            f'<span class="ask"><label>wrong? <select>'
            f'<option value="">it is…</option>{options}</select></label> '
            f'<button type="button" class="correct">correct</button></span>'
            f'<span class="message" role="status"></span></div>')


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>teddywatch: the last {count} results</title>
<style{nonce}>{style}</style>
</head>
<body>
<header><h1>teddywatch</h1><p>The last {count} results, newest first.</p>{teach}
<nav id="filters" aria-label="Filter by label">
{buttons}
</nav></header>
{empty}
<main id="cards">
{cards}
</main>
<script{nonce}>{script}</script>
</body>
</html>
"""

_LIVE_HEADER = ('<p class="teach-help">A result is wrong? Choose the right label on its card: '
                'teddywatch keeps it as an example and learns from it (<code>teddywatch learn'
                '</code>). <button type="button" id="undo-learning">undo learning</button> '
                '<span id="learning" role="status"></span></p>')

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
.name, time, .model, .detail { flex-basis: 100%; font-size: .85em; color: #555; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.model { color: #888; }
.detail { color: #a33; white-space: normal; }
.teach { margin-top: 6px; font-size: .85em; }
.teach select, .teach button, #undo-learning { font: inherit; }
.teach[data-corrected=""] .fixed, .teach:not([data-corrected=""]) .ask { display: none; }
.fixed b { color: #8b5e3c; }
.message { display: block; color: #555; } .failed .message { color: #a33; }
[hidden] { display: none !important; }
"""

# Plain JS: a button per label shows only that label's cards (kept across reloads), and the page
# reloads itself when teddywatch has something new to show.
_SCRIPT = """
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
"""

# The file: every few seconds it loads gallery-version.js (a <script>, which file:// pages may
# load where fetch() is refused) and compares versions.
_STATIC_SCRIPT = """
  window.teddywatchVersion = function (latest) {
    if (latest !== version) { location.reload(); }
  };
  setInterval(function () {
    var probe = document.createElement('script');
    probe.src = __VERSION_FILE__ + '?' + Date.now();
    probe.onload = probe.onerror = function () { probe.remove(); };
    document.head.appendChild(probe);
  }, __CHECK_MS__);
"""

# Served: the version comes from the server (new results, or corrections made anywhere); a
# correction is a JSON POST to the server, which answers with what the card shows now (and the
# version that includes it) or a one-line error. A label chosen but not yet sent, a POST on its
# way, or a version asked for before the last POST was answered hold the reload back.
_LIVE_SCRIPT = """
  var posting = 0, posted = 0;
  function choosing() {
    return Array.prototype.some.call(document.querySelectorAll('.teach select'),
                                     function (s) { return s.value !== ''; });
  }
  setInterval(function () {
    var asked = posted;
    fetch('version.json', {cache: 'no-store'})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data && data.version !== version && !choosing() && !posting && asked === posted) {
          location.reload();
        }
      }, function () {});
  }, __CHECK_MS__);
  function post(action, body) {
    posting += 1;
    return fetch(action, {method: 'POST', cache: 'no-store',
                          headers: {'Content-Type': 'application/json'},
                          body: JSON.stringify(body)})
      .then(function (r) {
        var json = (r.headers.get('Content-Type') || '').indexOf('application/json') === 0;
        return (json ? r.json() : r.text().then(function (t) { return {error: t.trim()}; }))
          .then(function (data) {
            if (!r.ok && !data.error) { data.error = 'teddywatch answered ' + r.status; }
            return data;
          });
      }).catch(function () { return {error: 'teddywatch does not answer: is it still running?'}; })
      .then(function (data) {
        if (data.version) { version = data.version; }  // this page's own change: no reload
        posting -= 1;
        posted += 1;
        return data;
      });
  }
  document.getElementById('cards').addEventListener('click', function (event) {
    var button = event.target.closest('.teach button');
    if (!button) { return; }
    var teach = button.closest('.teach');
    var select = teach.querySelector('select');
    var message = teach.querySelector('.message');
    var body = {key: teach.closest('.card').dataset.key};
    var action = 'undo';
    if (button.classList.contains('correct')) {
      if (!select.value) { message.textContent = 'choose the right label first'; return; }
      body.label = select.value;
      action = 'correct';
    }
    button.disabled = true;
    message.textContent = '';
    post(action, body).then(function (data) {
      button.disabled = false;
      teach.classList.toggle('failed', Boolean(data.error));
      if (data.error) { message.textContent = data.error; return; }
      select.value = '';
      teach.dataset.corrected = data.corrected || '';
      teach.querySelector('.fixed b').textContent = data.corrected || '';
      message.textContent = data.message || '';
    });
  });
  var undoLearning = document.getElementById('undo-learning');
  undoLearning.addEventListener('click', function () {
    undoLearning.disabled = true;
    post('undo-learning', {}).then(function (data) {
      undoLearning.disabled = false;
      document.getElementById('learning').textContent = data.error || data.message;
    });
  });
"""
