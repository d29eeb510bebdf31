"""The live gallery: the real server in front of a real Service (the default model, a temp watched
folder, the user's data dir in tmp), asked over real HTTP and through headless Chromium.

The refusals are real requests with the token, Host, Origin or content type wrong, each checked
to change nothing; the same request with all of them right does change something, so each test
can fail. The corrections are made in the page by a real key press and a real mouse click.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from conftest import FIXTURES, REPO
from gui_tools import Chromium, wait_for
from teddywatch.config import (Config, GalleryConfig, LogConfig, NotifyConfig, ServiceConfig,
                               WatchConfig)
from teddywatch.gallery import Gallery, GallerySink, thumb_key
from teddywatch.gallery.server import NO_TOKEN, GalleryServer
from teddywatch.ledger import read_results
from teddywatch.results import CORRECTED, Result
from teddywatch.service import Service
from teddywatch.teach.corrections import CorrectionStore

pytestmark = [pytest.mark.usefixtures("no_leaked_threads"), pytest.mark.timeout(180)]


@dataclass
class Live:
    config: Config
    service: Service
    gallery: Gallery
    server: GalleryServer

    @property
    def inbox(self) -> Path:
        return self.config.watch[0].path

    def drop(self, fixture: str, name: str) -> Path:
        """A photo arrives in the watched folder; returns it once the gallery shows it."""
        partial = self.inbox / (name + ".part")
        shutil.copy(FIXTURES / fixture, partial)
        os.replace(partial, self.inbox / name)
        path = str(self.inbox / name)
        wait_for(lambda: any(r.path == path for r in self.gallery.shown().results), timeout=60,
                 what=f"{name} on the gallery page")
        return self.inbox / name

    def result(self, path: Path) -> Result:
        return next(r for r in self.gallery.shown().results if r.path == str(path))

    def corrected_rows(self) -> list[Result]:
        return [r for r in read_results(self.config.log.path, corrections=True)
                if r.status == CORRECTED]


@pytest.fixture
def live(home: Path) -> Iterator[Live]:
    """Wired as run_headless and the tray wire it: Service -> GallerySink -> Gallery <- server."""
    inbox = home / "inbox"
    inbox.mkdir()
    config = Config(watch=(WatchConfig(path=inbox),), log=LogConfig(path=home / "results.csv"),
                    notify=NotifyConfig(enabled=False),
                    service=ServiceConfig(settle_seconds=0.2, rescan_minutes=60),
                    gallery=GalleryConfig(enabled=True, items=50))
    gallery = Gallery(items=config.gallery.items)
    sink = GallerySink(gallery, quiet_seconds=0.1)
    server = GalleryServer(gallery)
    service = Service(config)
    service.subscribe(lambda event: sink.handle(event) if isinstance(event, Result) else None)
    server.start(service)
    service.start()
    try:
        yield Live(config, service, gallery, server)
    finally:
        server.close()
        service.stop()
        sink.close()


def ask(server: GalleryServer, method: str, path: str, *, host: str | None = "own",
        headers: dict[str, str] | None = None, body: bytes | None = None,
        hosts: tuple[str, ...] = ()) -> tuple[int, dict[str, str], bytes]:
    """One real HTTP request; `host=None` sends none, `hosts` sends several."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for value in hosts or ((f"127.0.0.1:{server.port}" if host == "own" else host,)
                               if host is not None else ()):
            conn.putheader("Host", value)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def own_origin(server: GalleryServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def correction_body(live: Live, path: Path, label: str = "other") -> bytes:
    return json.dumps({"key": thumb_key(live.result(path)), "label": label}).encode()


# --- over HTTP ----------------------------------------------------------------------------------

def test_the_token_address_serves_the_live_page_its_pictures_and_version(live: Live) -> None:
    photo = live.drop("teddy_1.jpg", "IMG_0042.jpg")
    result = live.result(photo)
    key = thumb_key(result)
    assert live.server.url == f"http://127.0.0.1:{live.server.port}/{live.server.token}/"
    assert len(live.server.token) >= 32
    base = f"/{live.server.token}/"
    for host in (f"127.0.0.1:{live.server.port}", f"localhost:{live.server.port}"):
        status, headers, body = ask(live.server, "GET", base, host=host)
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        page = body.decode()
        assert "IMG_0042.jpg" in page and f'data-key="{key}"' in page
        # Which model version answered, as the results log has it.
        assert result.model.startswith("bears-int8.onnx@")
        assert f'<span class="model" title="the model that answered">{result.model}</span>' in page
        assert [f'<option value="{label}">' in page for label in live.service.labels] == \
            [True] * 4 and "other" in live.service.labels
        nonce = re.search(r"<script nonce=\"([^\"]+)\">", page).group(1)
        assert f"script-src 'nonce-{nonce}'" in headers["Content-Security-Policy"]
        assert headers["Cache-Control"] == "no-store"
        assert headers["Referrer-Policy"] == "no-referrer"
    status, headers, body = ask(live.server, "GET", f"{base}thumbs/{key}.jpg")
    assert (status, headers["Content-Type"], body[:2]) == (200, "image/jpeg", b"\xff\xd8")
    status, headers, body = ask(live.server, "GET", f"{base}picture/{key}")
    assert (status, headers["Content-Type"]) == (200, "image/jpeg")
    assert body == (FIXTURES / "teddy_1.jpg").read_bytes()
    status, _, body = ask(live.server, "GET", f"{base}version.json")
    assert status == 200 and json.loads(body) == {"version": live.server.version()}
    status, headers, _ = ask(live.server, "GET", f"/{live.server.token}")
    assert (status, headers["Location"]) == (301, base)
    assert ask(live.server, "GET", f"{base}picture/{'0' * 32}")[0] == 404
    assert ask(live.server, "GET", f"{base}thumbs/../../results.csv")[0] == 404


def test_requests_without_the_right_token_are_refused(live: Live) -> None:
    photo = live.drop("teddy_1.jpg", "IMG_0042.jpg")
    key = thumb_key(live.result(photo))
    token = live.server.token
    other = "A" * len(token)
    for path in ("/", "/favicon.ico", "/version.json", f"/thumbs/{key}.jpg", f"/{other}/",
                 f"/{token[:-1]}/", f"/{token}x/", f"/x{token}/", f"/{token.swapcase()}/",
                 f"/{other}/version.json", f"/{other}{token}/", f"/{other}/thumbs/{key}.jpg",
                 f"/{other}/picture/{key}", f"/?token={token}", f"/{other}/?token={token}",
                 f"http://127.0.0.1:{live.server.port}/{token}/"):
        status, headers, body = ask(live.server, "GET", path)
        assert (status, body.decode().strip()) == (403, NO_TOKEN), path
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
    status, _, body = ask(live.server, "POST", f"/{other}/correct",
                          headers={"Content-Type": "application/json",
                                   "Origin": own_origin(live.server)},
                          body=correction_body(live, photo))
    assert status == 403 and live.corrected_rows() == [] and CorrectionStore().active() == []
    # The right token, for contrast.
    assert ask(live.server, "GET", f"/{token}/")[0] == 200


def test_a_foreign_host_is_refused(live: Live) -> None:
    """DNS rebinding: a site whose name resolves to 127.0.0.1 sends its own name as Host."""
    port = live.server.port
    page = f"/{live.server.token}/"
    for host in (f"evil.example:{port}", f"localhost.evil.example:{port}", f"127.0.0.1:{port + 1}",
                 "127.0.0.1", "localhost", f"[::1]:{port}", f"127.0.0.2:{port}", ""):
        status, _, body = ask(live.server, "GET", page, host=host)
        assert status == 403 and b"<html" not in body, host
    assert ask(live.server, "GET", page, host=None)[0] == 403
    assert ask(live.server, "GET", page, hosts=(f"127.0.0.1:{port}", f"evil.example:{port}"))[0] \
        == 403
    photo = live.drop("black_1.jpg", "bear.jpg")
    status, _, _ = ask(live.server, "POST", f"{page}correct", host=f"evil.example:{port}",
                       headers={"Content-Type": "application/json"},
                       body=correction_body(live, photo))
    assert status == 403 and live.corrected_rows() == []
    assert ask(live.server, "GET", page, host=f"LOCALHOST:{port}")[0] == 200


def test_a_post_from_elsewhere_or_not_json_is_refused_and_changes_nothing(live: Live) -> None:
    photo = live.drop("other_dog.jpg", "dog.jpg")
    action = f"/{live.server.token}/correct"
    body = correction_body(live, photo)
    refused = [
        (403, {"Origin": "http://evil.example", "Content-Type": "application/json"}),
        (403, {"Origin": "null", "Content-Type": "application/json"}),
        (403, {"Origin": f"http://127.0.0.1:{live.server.port + 1}",
               "Content-Type": "application/json"}),
        (403, {"Origin": f"https://127.0.0.1:{live.server.port}",
               "Content-Type": "application/json"}),
        (403, {"Origin": own_origin(live.server), "Sec-Fetch-Site": "cross-site",
               "Content-Type": "application/json"}),
        (403, {"Origin": own_origin(live.server), "Sec-Fetch-Site": "same-site",
               "Content-Type": "application/json"}),
        # What an HTML form can send (text/plain can carry a JSON-looking body).
        (415, {"Origin": own_origin(live.server), "Content-Type": "text/plain"}),
        (415, {"Origin": own_origin(live.server),
               "Content-Type": "application/x-www-form-urlencoded"}),
        (415, {"Origin": own_origin(live.server), "Content-Type": "multipart/form-data; b=x"}),
        (415, {"Origin": own_origin(live.server)}),
        (415, {}),
    ]
    for expected, headers in refused:
        status, _, answer = ask(live.server, "POST", action, headers=headers, body=body)
        assert status == expected, (headers, answer)
        assert live.corrected_rows() == [] and CorrectionStore().active() == [], headers
    # A CORS preflight is never granted.
    status, headers, _ = ask(live.server, "OPTIONS", action,
                             headers={"Origin": "http://evil.example",
                                      "Access-Control-Request-Method": "POST"})
    assert status == 501 and not [h for h in headers if h.lower().startswith("access-control")]

    # The page's own request (what its script sends) does it.
    status, _, answer = ask(live.server, "POST", action, body=body,
                            headers={"Origin": own_origin(live.server),
                                     "Sec-Fetch-Site": "same-origin",
                                     "Content-Type": "application/json"})
    assert status == 200 and json.loads(answer)["corrected"] == "other"
    (row,) = live.corrected_rows()
    assert (row.path, row.label, row.model) == (str(photo), "other", "user")
    assert [(c.path, c.label) for c in CorrectionStore().active()] == [(str(photo), "other")]


def test_a_bad_correction_is_one_line_and_a_stopped_service_says_so(live: Live) -> None:
    photo = live.drop("grizzly_1.jpg", "bear.jpg")
    action = f"/{live.server.token}/correct"
    json_headers = {"Content-Type": "application/json"}
    status, _, answer = ask(live.server, "POST", action, headers=json_headers,
                            body=correction_body(live, photo, label="panda"))
    assert status == 400 and json.loads(answer) == {
        "error": f"'panda' is not one of this model's labels: {', '.join(live.service.labels)}"}
    for broken in (b"not json", b"[1, 2]", b'{"key": 5, "label": "other"}'):
        status, _, answer = ask(live.server, "POST", action, headers=json_headers, body=broken)
        assert status == 400 and "\n" not in json.loads(answer)["error"], broken
    status, _, answer = ask(live.server, "POST", action, headers=json_headers,
                            body=json.dumps({"key": "0" * 32, "label": "other"}).encode())
    assert status == 404 and "no longer in the gallery" in json.loads(answer)["error"]
    live.service.stop()
    status, _, answer = ask(live.server, "POST", action, headers=json_headers,
                            body=correction_body(live, photo))
    assert status == 503 and json.loads(answer) == {
        "error": "teddywatch is not running: start it to correct results"}
    assert live.corrected_rows() == [] and CorrectionStore().active() == []


# --- in a real browser ------------------------------------------------------------------------

def click(browser: Chromium, selector: str) -> None:
    """A real left click (press and release) in the middle of the element."""
    x, y = browser.evaluate("(function () {"
                            f"var e = document.querySelector({json.dumps(selector)});"
                            "e.scrollIntoView({block: 'center'});"
                            "var r = e.getBoundingClientRect();"
                            "return [r.left + r.width / 2, r.top + r.height / 2]; })()")
    for kind in ("mousePressed", "mouseReleased"):
        browser.send("Input.dispatchMouseEvent", session=True, type=kind, x=x, y=y,
                     button="left", clickCount=1)


def choose(browser: Chromium, selector: str, label: str) -> None:
    """Focus the select and type the label, as a user picks an option from the keyboard."""
    browser.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
    for char in label:
        browser.send("Input.dispatchKeyEvent", session=True, type="keyDown", key=char, text=char)
        browser.send("Input.dispatchKeyEvent", session=True, type="keyUp", key=char)
    assert browser.evaluate(f"document.querySelector({json.dumps(selector)}).value") == label


def card_state(browser: Chromium, key: str) -> dict:
    return browser.evaluate(
        f"(function () {{ var c = document.querySelector('.card[data-key=\"{key}\"]');"
        "if (!c) { return null; } var t = c.querySelector('.teach');"
        "var shown = function (s) {"
        "  return getComputedStyle(t.querySelector(s)).display !== 'none'; };"
        "return {corrected: t.dataset.corrected, fixed: shown('.fixed'), ask: shown('.ask'),"
        "        text: t.querySelector('.fixed').textContent.trim(),"
        "        message: t.querySelector('.message').textContent,"
        "        failed: t.classList.contains('failed'),"
        "        model: c.querySelector('.model').textContent}; })()")


def test_a_correction_made_in_the_page_reaches_the_log_and_the_examples(live: Live) -> None:
    dog = live.drop("other_dog.jpg", "dog.jpg")
    gone = live.drop("black_2.jpg", "gone.jpg")
    dog_key, gone_key = thumb_key(live.result(dog)), thumb_key(live.result(gone))
    browser = Chromium()
    try:
        browser.open(live.server.url)
        state = card_state(browser, dog_key)
        assert state["model"] == live.result(dog).model and "+v" not in state["model"]
        assert (state["corrected"], state["fixed"], state["ask"]) == ("", False, True)

        choose(browser, f'.card[data-key="{dog_key}"] select', "other")
        click(browser, f'.card[data-key="{dog_key}"] button.correct')
        state = wait_for(lambda: (s := card_state(browser, dog_key))["corrected"] and s,
                         timeout=30, what="the card to say it was corrected")
        assert (state["text"], state["fixed"], state["ask"], state["message"]) == (
            "corrected to other undo", True, False, "")
        (row,) = live.corrected_rows()
        was = live.result(dog)
        assert (row.path, row.label, row.status, row.model) == (str(dog), "other", CORRECTED,
                                                                "user")
        assert row.detail.startswith(f"was {was.label} ")
        (correction,) = CorrectionStore().active()
        assert (correction.path, correction.label, correction.was) == (str(dog), "other",
                                                                      was.label)
        assert correction.example.is_file()

        # A page opened afterwards shows the correction from the start.
        browser.open(live.server.url)
        state = card_state(browser, dog_key)
        assert (state["corrected"], state["text"], state["fixed"]) == (
            "other", "corrected to other undo", True)

        # Undo, from the page.
        click(browser, f'.card[data-key="{dog_key}"] button.undo')
        state = wait_for(lambda: (s := card_state(browser, dog_key))["message"] and s,
                         timeout=30, what="the card to say the correction was withdrawn")
        assert (state["corrected"], state["fixed"], state["ask"], state["message"]) == (
            "", False, True, "correction to other withdrawn")
        assert CorrectionStore().active() == []
        assert live.corrected_rows()[-1].detail == "correction to other undone"

        # What the service says is wrong comes back as one line on the card.
        gone.unlink()
        choose(browser, f'.card[data-key="{gone_key}"] select', "grizzly")
        click(browser, f'.card[data-key="{gone_key}"] button.correct')
        state = wait_for(lambda: (s := card_state(browser, gone_key))["failed"] and s,
                         timeout=30, what="the card to show the error")
        assert state["message"].startswith(f"{gone}: cannot ") and "\n" not in state["message"]
        assert state["corrected"] == "" and CorrectionStore().active() == []
        assert len(live.corrected_rows()) == 2
        # The browser notes the refused correction's 400; nothing else (no CSP violation).
        assert browser.console_errors() == [
            "Failed to load resource: the server responded with a status of 400 (Bad Request) "
            f"{live.server.url}correct"]
    finally:
        browser.close()


def test_an_open_page_follows_new_results_and_corrections_made_elsewhere(live: Live) -> None:
    dog = live.drop("other_dog.jpg", "dog.jpg")
    browser = Chromium()

    def cards() -> list[str] | None:
        try:  # None while the page is being replaced
            return browser.evaluate("document.readyState === 'complete' ? Array.from("
                                    "document.querySelectorAll('.card')).map(c => "
                                    "c.querySelector('.name').textContent + ' ' + "
                                    "c.querySelector('.teach').dataset.corrected) : null")
        except AssertionError:
            return None
    try:
        browser.open(live.server.url)
        assert cards() == ["dog.jpg "]
        live.drop("teddy_1.jpg", "teddy.jpg")  # the service classifies a new photo
        wait_for(lambda: cards() == ["teddy.jpg ", "dog.jpg "], timeout=30,
                 what="the page to reload with the new result")
        live.service.correct(str(dog), "black")  # as the tray's menu or the CLI would
        wait_for(lambda: cards() == ["teddy.jpg ", "dog.jpg black"], timeout=30,
                 what="the page to reload with the correction")
        assert browser.console_errors() == []
    finally:
        browser.close()


class _ForeignSite(BaseHTTPRequestHandler):
    page = b""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args) -> None:
        pass


def test_a_page_on_another_origin_cannot_correct_even_knowing_the_address(live: Live,
                                                                          caplog) -> None:
    """CSRF in a real browser: another site's page (here another port, so another origin) posts
    a form and two fetches at the gallery's own address. The server hears them and refuses."""
    caplog.set_level(logging.DEBUG, logger="teddywatch.gallery.server")
    dog = live.drop("other_dog.jpg", "dog.jpg")
    action = f"{live.server.url}correct"
    body = json.dumps({"key": thumb_key(live.result(dog)), "label": "other"})
    name, value = body[:-2] + ', "x": "', '"}'  # a text/plain form posts name=value
    _ForeignSite.page = f"""<!DOCTYPE html><body>
<form method="POST" enctype="text/plain" action="{action}" target="sink">
<input name='{name}' value='{value}'></form><iframe name="sink"></iframe>
<script>
fetch({json.dumps(action)}, {{method: 'POST', mode: 'no-cors', body: {json.dumps(body)},
      headers: {{'Content-Type': 'application/json'}}}});
fetch({json.dumps(action)}, {{method: 'POST', body: {json.dumps(body)},
      headers: {{'Content-Type': 'application/json'}}}}).catch(function () {{}});
document.forms[0].submit();
</script></body>""".encode()
    site = ThreadingHTTPServer(("127.0.0.1", 0), _ForeignSite)
    thread = threading.Thread(target=site.serve_forever, name="test-foreign-site")
    thread.start()
    browser = Chromium()
    try:
        browser.open(f"http://127.0.0.1:{site.server_address[1]}/")

        def answered() -> list[str]:
            return [r.getMessage() for r in caplog.records
                    if re.search(r'"(POST|OPTIONS) /TOKEN/correct HTTP/1\.1" \d+', r.getMessage())]
        heard = wait_for(lambda: len(answered()) >= 3 and answered(), timeout=30,
                         what="the form post, the no-cors post and the preflight")
        assert sorted(re.search(r'"(\w+) .*" (\d+)', m).groups() for m in heard) == [
            ("OPTIONS", "501"), ("POST", "403"), ("POST", "403")]
        assert not [r for r in caplog.records if live.server.token in r.getMessage()]
        assert live.corrected_rows() == [] and CorrectionStore().active() == []
    finally:
        browser.close()
        site.shutdown()
        site.server_close()
        thread.join()


# --- wired: run --headless --------------------------------------------------------------------

def test_run_headless_serves_the_gallery_and_logs_its_address_once(tmp_path: Path,
                                                                   user_env) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f'[[watch]]\npath = "{inbox}"\n[notify]\nenabled = false\n'
                      '[service]\nsettle_seconds = 0.2\n', encoding="utf-8")
    shutil.copy(FIXTURES / "teddy_1.jpg", inbox / "IMG_0042.jpg")
    proc = subprocess.Popen([sys.executable, "-m", "teddywatch", "--config", str(config), "run",
                             "--headless"], cwd=REPO, env=user_env, stderr=subprocess.PIPE,
                            text=True)
    lines: list[str] = []

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
    reader = threading.Thread(target=read, name="test-stderr")
    reader.start()
    try:
        line = wait_for(lambda: next((l for l in lines if "http://127.0.0.1:" in l), None)
                        or proc.poll() is not None, timeout=60, what="the gallery's address")
        assert proc.poll() is None, "".join(lines)
        url = re.search(r"http://127\.0\.0\.1:\d+/[\w-]+/", line).group(0)

        where = urlsplit(url)

        def page() -> str:
            conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
            try:
                conn.request("GET", where.path)
                return conn.getresponse().read().decode()
            finally:
                conn.close()
        assert "IMG_0042.jpg" in wait_for(lambda: "IMG_0042.jpg" in page() and page(),
                                          timeout=60, what="the photo on the served page")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        reader.join(10)
    assert proc.returncode == 0, "".join(lines)
    assert sum(url in l for l in lines) == 1
    assert not any("Traceback" in l for l in lines)


def test_run_headless_with_serve_off_keeps_only_the_page_file(tmp_path: Path, user_env) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f'[[watch]]\npath = "{inbox}"\n[notify]\nenabled = false\n'
                      '[service]\nsettle_seconds = 0.2\n[gallery]\nserve = false\n',
                      encoding="utf-8")
    page = Path(user_env["XDG_DATA_HOME"]) / "teddywatch" / "gallery.html"
    shutil.copy(FIXTURES / "teddy_1.jpg", inbox / "IMG_0042.jpg")
    proc = subprocess.Popen([sys.executable, "-m", "teddywatch", "--config", str(config), "run",
                             "--headless"], cwd=REPO, env=user_env, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for(lambda: proc.poll() is not None or page.exists()
                 and "IMG_0042.jpg" in page.read_text(encoding="utf-8"), timeout=60,
                 what="the photo on the page file")
    finally:
        proc.send_signal(signal.SIGINT)
        stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, stderr
    assert "http://" not in stderr and "Traceback" not in stderr


def test_a_port_in_use_is_one_line_and_the_gallery_stays_a_page(tmp_path: Path, caplog) -> None:
    import socket

    from teddywatch.gallery.server import bind_server

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        server, problem = bind_server(GalleryConfig(port=port), Gallery(tmp_path / "g.html"))
    finally:
        taken.close()
    assert server is None
    assert problem == (f"cannot serve the gallery on 127.0.0.1:{port}: Address already in use; "
                       "set [gallery] port = 0 to use any free port; the gallery is only the page "
                       "in the data folder")
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [problem]
    assert bind_server(GalleryConfig(serve=False), Gallery(tmp_path / "g.html")) == (None, "")
