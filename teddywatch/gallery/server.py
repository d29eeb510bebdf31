"""The live gallery: a small web server on 127.0.0.1 that serves the gallery page and takes the
user's corrections from it.

    server = GalleryServer(gallery, port=0)   # binds 127.0.0.1 (a free port), makes a token
    server.url                                # http://127.0.0.1:PORT/TOKEN/ : what is opened
    server.start(service)                     # serves on its own thread; POSTs call the service
    server.close()                            # stops that thread and every request's thread

A correction travels: the card's button -> `POST TOKEN/correct {"key", "label"}` (JSON, from the
page's own script) -> this server finds the card's result in what the gallery shows ->
`service.correct(path, label)` (teach/record.py: an example in the data folder and a `corrected`
row in the results log) -> the answer, `{"corrected": label}` or `{"error": "one line"}`, which the
card shows.

Who may ask, checked in this order; a refusal is one line of text, and nothing is done:
- Host must be 127.0.0.1:PORT or localhost:PORT (403): a site whose name someone pointed at
  127.0.0.1 (DNS rebinding) sends its own name;
- the path must start with /TOKEN/ (403): a random token made at each start (compared in
  constant time), so no other page, local program or user can guess an address that works;
- a POST must come from the page itself: an Origin other than the server's own is refused
  (403), so is a Sec-Fetch-Site other than same-origin (403), and its body must be JSON
  (Content-Type: application/json, else 415), which a form on another site cannot send and a
  script on another site can only send after a CORS preflight this server never grants.
Answers are never cached or sent on as a Referer, and the page runs only its own script (a
Content-Security-Policy with a new nonce each time).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import mimetypes
import os
import re
import secrets
import shutil
import socket
import stat
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from teddywatch.config import GalleryConfig
from teddywatch.gallery.core import Gallery, Shown
from teddywatch.gallery.page import Live, render, thumb_key
from teddywatch.teach.corrections import Correction, CorrectionError, CorrectionStore

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_BODY = 16 * 1024
THUMB = re.compile(r"thumbs/([0-9a-f]{32})\.jpg")
PICTURE = re.compile(r"picture/([0-9a-f]{32})")
BARE = "."  # the route of /TOKEN without its slash: redirected, so relative links work
NOT_RUNNING = "teddywatch is not running: start it to correct results"
LOST = "that picture is no longer in the gallery: reload the page"
NO_TOKEN = ("this address has no valid token: open the gallery from the tray menu (Open gallery) "
            "or the address teddywatch logged when it started; each start makes a new one")


class GalleryServerError(Exception):
    """The server cannot listen; the message is one line."""


class Teacher(Protocol):
    """What the server asks (the Service)."""

    @property
    def labels(self) -> tuple[str, ...]: ...
    def correct(self, path: str, label: str) -> Correction: ...
    def undo_correction(self, path: str) -> Correction | None: ...
    def undo_learning(self) -> str: ...


class GalleryServer:
    def __init__(self, gallery: Gallery, *, port: int = 0,
                 corrections: CorrectionStore | None = None) -> None:
        self.gallery = gallery
        self.corrections = corrections or CorrectionStore()
        self.token = secrets.token_urlsafe(24)
        try:
            self._httpd = _HTTPServer((HOST, port), _Handler)
        except OSError as exc:
            hint = "; set [gallery] port = 0 to use any free port" if port else ""
            raise GalleryServerError(f"cannot serve the gallery on {HOST}:{port}: "
                                     f"{exc.strerror or exc}{hint}") from None
        self._httpd.owner = self
        self.port: int = self._httpd.server_address[1]
        self.hosts = {f"{HOST}:{self.port}", f"localhost:{self.port}"}
        self.origins = {f"http://{host}" for host in self.hosts}
        self.teacher: Teacher | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/{self.token}/"

    def start(self, teacher: Teacher) -> GalleryServer:
        self.teacher = teacher
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name="teddywatch-gallery-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, end the requests in progress (their sockets are shut), close."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.close_connections()
        self._httpd.server_close()  # joins the request threads

    # --- what the handler asks ------------------------------------------------------------

    def refusal(self, method: str, headers: Any, path: str) -> tuple[int, str] | None:
        """Why this request is refused, or None."""
        hosts = headers.get_all("Host") or []
        if len(hosts) != 1 or hosts[0].strip().lower() not in self.hosts:
            return 403, f"the Host must be {HOST}:{self.port}"
        if self.route(path) is None:
            return 403, NO_TOKEN
        if method != "POST":
            return None
        origins = headers.get_all("Origin") or []
        if origins and (len(origins) != 1 or origins[0] not in self.origins):
            return 403, "only the gallery page itself may change anything"
        if headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
            return 403, "only the gallery page itself may change anything"
        kind = headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return 415, "expected a JSON body (Content-Type: application/json)"
        return None

    def route(self, path: str) -> str | None:
        """The part of `path` after /TOKEN/ ("" for the page, BARE for /TOKEN); None without
        the token."""
        parts = path.split("?", 1)[0].split("/", 2)
        if len(parts) < 2 or not hmac.compare_digest(parts[1].encode(), self.token.encode()):
            return None
        return parts[2] if len(parts) == 3 else BARE

    def page(self) -> tuple[str, str]:
        """The live page and its nonce."""
        shown = self.gallery.shown()
        labels = self._labels()
        nonce = secrets.token_urlsafe(16)
        live = Live(labels, self._corrected(shown), nonce)
        return render(list(shown.results), dict(shown.thumbs), self.version(shown), live), nonce

    def version(self, shown: Shown | None = None) -> str:
        """Changes when the page would: new results, a correction made anywhere, the labels."""
        shown = shown or self.gallery.shown()
        try:
            st = self.corrections.journal.stat()
            journal = f"{st.st_mtime_ns}-{st.st_size}"
        except OSError:
            journal = ""
        raw = "\0".join([shown.version, journal, *self._labels()])
        return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()[:16]

    def _labels(self) -> tuple[str, ...]:
        return tuple(self.teacher.labels) if self.teacher is not None else ()

    def _corrected(self, shown: Shown) -> dict[str, str]:
        """thumb_key -> label for the shown results the user has corrected (after the result:
        a file classified again since is a new picture)."""
        active = {c.path: c for c in self.corrections.active()}
        out = {}
        for result in shown.results:
            c = active.get(result.path)
            if c is not None and _after(c, result.time):
                out[thumb_key(result)] = c.label
        return out

    def act(self, action: str, body: Any) -> tuple[int, dict[str, str]]:
        """A POST: (status, JSON answer)."""
        if not isinstance(body, dict):
            return 400, {"error": "expected a JSON object"}
        teacher = self.teacher
        if teacher is None or not teacher.labels:
            return 503, {"error": NOT_RUNNING}
        if action == "undo-learning":
            message = teacher.undo_learning()
            log.info("gallery: undo learning: %s", message)
            return 200, {"message": message, "version": self.version()}
        if action not in ("correct", "undo"):
            return 404, {"error": f"no such action: {action}"}
        key, label = body.get("key"), body.get("label")
        if not isinstance(key, str) or (action == "correct" and not isinstance(label, str)):
            return 400, {"error": 'expected {"key": "...", "label": "..."}'}
        result = self.gallery.shown().find(key)
        if result is None:
            return 404, {"error": LOST}
        try:
            if action == "correct":
                correction = teacher.correct(result.path, label)
                log.info("gallery: %s corrected to %s", result.path, correction.label)
                return 200, {"corrected": correction.label, "version": self.version()}
            withdrawn = teacher.undo_correction(result.path)
        except CorrectionError as exc:
            return 400, {"error": " ".join(str(exc).split())}
        message = (f"correction to {withdrawn.label} withdrawn" if withdrawn is not None
                   else "it had no correction")
        log.info("gallery: %s: %s", result.path, message)
        return 200, {"corrected": "", "message": message, "version": self.version()}


def _after(correction: Correction, when: datetime) -> bool:
    """The correction was made after that result (the journal keeps whole seconds)."""
    try:
        return correction.time is None or correction.time >= when.replace(microsecond=0)
    except TypeError:  # one of them without a time zone: a row from elsewhere; show it
        return True


def bind_server(config: GalleryConfig, gallery: Gallery | None) -> tuple[GalleryServer | None,
                                                                         str]:
    """A bound (not yet serving) server when the gallery is on and served; else None, with why
    when it cannot listen (logged here; the tray also says it on the desktop)."""
    if gallery is None or not config.enabled or not config.serve:
        return None, ""
    try:
        return GalleryServer(gallery, port=config.port), ""
    except GalleryServerError as exc:
        log.warning("%s; the gallery is only the page in the data folder", exc)
        return None, f"{exc}; the gallery is only the page in the data folder"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every request's thread
    owner: GalleryServer

    def __init__(self, *args: Any) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(*args)

    def track(self, connection: socket.socket, live: bool) -> None:
        with self._open_lock:
            (self._open.add if live else self._open.discard)(connection)

    def close_connections(self) -> None:
        """A browser may keep a connection open without sending a request: end its wait."""
        with self._open_lock:
            for connection in self._open:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser that went away mid-answer: a debug line, never a traceback on stderr.
        log.debug("gallery: a request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "teddywatch"
    sys_version = ""
    timeout = 30  # a client that sends nothing does not hold its thread for ever

    def setup(self) -> None:
        threading.current_thread().name = "teddywatch-gallery-request"
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self._refused("GET"):
            return
        try:
            self._get(self.server.owner.route(self.path) or "")
        except OSError as exc:  # the browser went away, or the data folder cannot be read
            log.debug("gallery: GET failed: %s", exc)
        except Exception:
            log.exception("gallery: GET failed")

    def _get(self, where: str) -> None:
        owner = self.server.owner
        thumb, picture = THUMB.fullmatch(where), PICTURE.fullmatch(where)
        if where == BARE:
            self.send_response(301)
            self.send_header("Location", f"/{owner.token}/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif where == "":
            page, nonce = owner.page()
            self._send(200, page.encode("utf-8", "surrogateescape"), "text/html; charset=utf-8",
                       csp=nonce)
        elif where == "version.json":
            self._json(200, {"version": owner.version()})
        elif thumb:
            self._file(str(owner.gallery.thumbs / f"{thumb[1]}.jpg"), "image/jpeg")
        elif picture:
            result = owner.gallery.shown().find(picture[1])
            if result is None:
                self._text(404, LOST)
                return
            moved = result.moved_to
            source = moved if moved and os.path.exists(moved) else result.path
            kind = mimetypes.guess_type(source)[0] or ""
            self._file(source, kind if kind.startswith("image/") else "application/octet-stream")
        else:
            self._text(404, "not found")

    def do_POST(self) -> None:  # noqa: N802
        if self._refused("POST"):
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._text(411, "a Content-Length is needed")
            return
        if not 0 <= length <= MAX_BODY:
            self._text(413, f"the body is larger than {MAX_BODY} bytes")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": "the body is not JSON"})
            return
        action = self.server.owner.route(self.path) or ""
        try:
            status, answer = self.server.owner.act(action, body)
        except Exception as exc:  # a bug, not the user's mistake: one line here, details logged
            log.exception("gallery: %s failed", action)
            status, answer = 500, {"error": f"{action} failed: {type(exc).__name__}: {exc}"}
        self._json(status, answer)

    # --- answers ----------------------------------------------------------------------------

    def _refused(self, method: str) -> bool:
        owner = self.server.owner
        refusal = owner.refusal(method, self.headers, self.path)
        if refusal is not None:
            if method == "POST":  # someone tried to change something: worth a line
                log.info("gallery: refused a POST from Origin %s: %s",
                         self.headers.get("Origin", "(none)"), refusal[1])
            self._text(*refusal)
        return refusal is not None

    def _text(self, status: int, text: str) -> None:
        self._send(status, (text + "\n").encode("utf-8"), "text/plain; charset=utf-8")

    def _json(self, status: int, answer: dict[str, str]) -> None:
        self._send(status, json.dumps(answer).encode("utf-8"), "application/json")

    def _send(self, status: int, body: bytes, kind: str, csp: str = "") -> None:
        self._head(status, kind, len(body), csp)
        self.wfile.write(body)

    def _head(self, status: int, kind: str, length: int, csp: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        if csp:
            self.send_header("Content-Security-Policy",
                             f"default-src 'none'; img-src 'self' data:; connect-src 'self'; "
                             f"style-src 'nonce-{csp}'; script-src 'nonce-{csp}'; "
                             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        self.end_headers()

    def _file(self, path: str, kind: str) -> None:
        """A regular file (never a pipe or a device a result's path may name), or 404."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            self._text(404, "not found")
            return
        with open(fd, "rb") as source:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                self._text(404, "not found")
                return
            self._head(200, kind, info.st_size)
            shutil.copyfileobj(source, self.wfile)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        token = self.server.owner.token
        log.debug("gallery: %s", (format % args).replace(token, "TOKEN"))
