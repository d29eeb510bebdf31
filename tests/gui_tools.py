"""Real GUI plumbing for tests: Xvfb + a D-Bus session bus + dunst, and headless Chromium.

Nothing is faked: an X server, a bus and a notification server are started as subprocesses, and
Chromium is driven through the DevTools protocol over a pipe (no extra Python packages). Missing
binaries skip the tests with the reason, unless TEDDYWATCH_REQUIRE_GUI=1 (CI) makes them fail.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def require_binaries(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if not missing:
        return
    reason = f"needs {', '.join(missing)} (installed by .ci/run)"
    if os.environ.get("TEDDYWATCH_REQUIRE_GUI"):
        pytest.fail(reason)
    pytest.skip(reason)


def require_modules(*names: str) -> None:
    """PyGObject and dbus-python build against system libraries (README, Linux desktop)."""
    import importlib.util

    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if not missing:
        return
    reason = (f"needs the Python modules {', '.join(missing)}: pip install 'PyGObject<3.51' "
              "dbus-python (see README, Linux desktop)")
    if os.environ.get("TEDDYWATCH_REQUIRE_GUI"):
        pytest.fail(reason)
    pytest.skip(reason)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll until predicate() is truthy; return its value or fail with `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- X server, session bus, notification server ----------------------------------------------

@dataclass
class DesktopSession:
    display: str
    bus_address: str
    notifications_file: Path  # one line per notification dunst received: appname\tsummary\tbody
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"DISPLAY": self.display, "DBUS_SESSION_BUS_ADDRESS": self.bus_address}

    def notifications(self) -> list[tuple[str, str, str]]:
        if not self.notifications_file.exists():
            return []
        lines = self.notifications_file.read_text(encoding="utf-8").splitlines()
        return [tuple((line.split("\t") + ["", "", ""])[:3]) for line in lines if line]

    def close(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _start_xvfb() -> tuple[subprocess.Popen, str]:
    read, write = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1024x768x24",
                             "-nolisten", "tcp"], pass_fds=(write,),
                            stderr=subprocess.DEVNULL)
    os.close(write)
    number = _read_line(read, timeout=15, what="Xvfb to report its display")
    os.close(read)
    return xvfb, f":{number}"


def _read_line(fd: int, timeout: float, what: str) -> str:
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise RuntimeError(f"timed out waiting for {what}")
        chunk = os.read(fd, 64)
        if not chunk:
            raise RuntimeError(f"{what}: the process exited")
        data += chunk
    return data.decode().strip()


def start_desktop_session(workdir: Path) -> DesktopSession:
    """Xvfb on a free display, a private session bus, and dunst recording what it receives."""
    require_binaries("Xvfb", "dbus-daemon", "dbus-send", "dunst")
    require_modules("gi", "dbus")
    xvfb, display = _start_xvfb()
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    address = _read_line(bus.stdout.fileno(), timeout=15, what="dbus-daemon's address")
    received = workdir / "notifications.tsv"
    recorder = workdir / "record-notification.sh"
    # dunst runs a rule's script for each notification it shows: proof the server got it.
    recorder.write_text(f"#!/bin/sh\nprintf '%s\\t%s\\t%s\\n' \"$1\" \"$2\" \"$3\" >> "
                        f"'{received}'\n", encoding="utf-8")
    recorder.chmod(0o755)
    dunstrc = workdir / "dunstrc"
    dunstrc.write_text(f'[global]\n    font = Monospace 8\n[record]\n    summary = "*"\n'
                       f'    script = {recorder}\n', encoding="utf-8")
    env = {**os.environ, "DISPLAY": display, "DBUS_SESSION_BUS_ADDRESS": address}
    dunst = subprocess.Popen(["dunst", "-config", str(dunstrc)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    session = DesktopSession(display, address, received, [xvfb, bus, dunst])
    try:
        wait_for(lambda: _bus_has(address, "org.freedesktop.Notifications"), timeout=15,
                 what="dunst to own org.freedesktop.Notifications")
    except BaseException:
        session.close()
        raise
    return session


def _bus_has(address: str, name: str) -> bool:
    out = subprocess.run(["dbus-send", f"--bus={address}", "--print-reply",
                          "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
                          "org.freedesktop.DBus.NameHasOwner", f"string:{name}"],
                         capture_output=True, text=True, timeout=10)
    return "boolean true" in out.stdout


# --- an app's menu as a desktop panel sees it: com.canonical.dbusmenu ------------------------

@dataclass
class MenuNode:
    id: int
    label: str
    enabled: bool
    visible: bool
    children: list["MenuNode"]

    def child(self, prefix: str) -> "MenuNode | None":
        """The visible child whose label starts with `prefix`."""
        return next((c for c in self.children if c.visible and c.label.startswith(prefix)),
                    None)

    def labels(self) -> list[str]:
        return [c.label for c in self.children if c.visible and c.label]


class DBusMenu:
    """A tray icon's menu through com.canonical.dbusmenu, read and clicked the way a desktop
    panel does: pystray's appindicator backend hands its GTK menu to libappindicator, which
    exports it there (libdbusmenu). The calls go over a connection of their own, through the
    session's dbus-daemon, to the GTK loop that owns the menu, and a click there runs the item's
    GTK `activate` handler."""

    INTERFACE = "com.canonical.dbusmenu"

    def __init__(self, bus_address: str, owner: str, path: str) -> None:
        from gi.repository import Gio

        flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
                 | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
        self._bus = Gio.DBusConnection.new_for_address_sync(bus_address, flags, None, None)
        self.owner, self.path = owner, path

    @classmethod
    def of_this_process(cls, bus_address: str, icon_name: str) -> "DBusMenu":
        """The menu of the appindicator icon `icon_name` that this process shows."""
        from gi.repository import Gio

        owner = Gio.bus_get_sync(Gio.BusType.SESSION, None).get_unique_name()
        return cls(bus_address, owner, f"/org/ayatana/NotificationItem/{icon_name}/Menu")

    def close(self) -> None:
        self._bus.close_sync(None)

    def _call(self, method: str, args, reply: str | None = None):  # noqa: ANN001
        from gi.repository import GLib

        result = self._bus.call_sync(self.owner, self.path, self.INTERFACE, method, args,
                                     GLib.VariantType(reply) if reply else None, 0, 10_000, None)
        return result.unpack() if result is not None else None

    def layout(self) -> MenuNode:
        from gi.repository import GLib

        _, root = self._call("GetLayout", GLib.Variant("(iias)", (0, -1, [])), "(u(ia{sv}av))")
        return _node(root)

    def find(self, *labels: str) -> MenuNode | None:
        """The item reached through `labels` from the top (each a label's start), or None."""
        node: MenuNode | None = self.layout()
        for label in labels:
            node = node.child(label) if node is not None else None
        return node

    def wait_for(self, *labels: str, timeout: float = 15.0) -> MenuNode:
        """The item at `labels` once the menu has it (the app rebuilds it on its own loop)."""
        return wait_for(lambda: self.find(*labels), timeout=timeout,
                        what=f"{' > '.join(labels)!r} in the menu")

    def click(self, *labels: str, timeout: float = 15.0) -> None:
        """Click the item at `labels` once it is there and enabled, as a panel sends it.

        The app may rebuild its menu between reading the layout and the click (ids are never
        reused, so a stale one is refused, not misdirected): then read it again and retry."""
        from gi.repository import GLib

        def clicked() -> bool:
            node = self.find(*labels)
            if node is None or not node.enabled:
                return False
            try:
                self._call("Event", GLib.Variant("(isvu)", (node.id, "clicked",
                                                            GLib.Variant("i", 0), 0)))
            except GLib.Error as exc:
                if "does not refer to a menu item" not in exc.message:
                    raise
                return False
            return True

        wait_for(clicked, timeout=timeout, what=f"{' > '.join(labels)!r} enabled in the menu")


def _node(raw) -> MenuNode:  # noqa: ANN001 - (id, properties, children) as unpacked
    number, props, children = raw
    return MenuNode(number, props.get("label", ""), props.get("enabled", True),
                    props.get("visible", True), [_node(c) for c in children])


# --- headless Chromium over the DevTools pipe -------------------------------------------------

def _high_fd(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Chromium:
    """One headless Chromium page driven over --remote-debugging-pipe (fds 3 and 4)."""

    def __init__(self, width: int = 1000, height: int = 720) -> None:
        require_binaries("chromium")
        self.profile = tempfile.TemporaryDirectory(prefix="teddywatch-chromium-")
        to_child, self._to_chrome = os.pipe()
        self._from_chrome, from_child = os.pipe()
        # Move the child's ends above 4 so the dup2 calls below cannot clobber each other.
        to_child, from_child = (_high_fd(to_child), _high_fd(from_child))

        def wire_fds() -> None:  # runs in the child: DevTools reads fd 3, writes fd 4
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        self.process = subprocess.Popen(
            [shutil.which("chromium"), *CHROMIUM_FLAGS, "--remote-debugging-pipe",
             f"--user-data-dir={self.profile.name}", f"--window-size={width},{height}"],
            preexec_fn=wire_fds, close_fds=False, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=True)
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=width,
                  height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, session: bool = False, timeout: float = 20, **params) -> dict:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        reply = self._wait(lambda m: m.get("id") == self._next_id, timeout, method)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _wait(self, match, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "method" in message:
                    self.events.append(message)
                if match(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise AssertionError(f"Chromium did not answer {what} within {timeout}s")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise AssertionError(f"Chromium exited while waiting for {what}")
            self._buffer += chunk

    def open(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", session=True, url=url)
        if not any(e["method"] == "Page.loadEventFired" for e in self.events):
            self._wait(lambda m: m.get("method") == "Page.loadEventFired", 20, "page load")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"JS error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def console_errors(self) -> list[str]:
        """Uncaught exceptions, console.error calls and browser log errors (failed loads)."""
        errors = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(json.dumps(params["exceptionDetails"])[:300])
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                errors.append(json.dumps(params.get("args"))[:300])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(params["entry"].get("text", "") + " " +
                              params["entry"].get("url", ""))
        return errors

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (AssertionError, OSError, RuntimeError):
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_chrome, self._from_chrome):
            os.close(fd)
        self.profile.cleanup()
