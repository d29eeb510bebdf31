"""The decoder process's side: decode the files the app sends, in order, until told to stop.

`teddywatch.decoderprocess` starts this module's `main` in a child process (`python -c ...`,
or the frozen app with `--decoder-process`) with one end of a socket pair and a shared file (a
memfd on Linux) that the decoded pixels are written to, from its start (a socket would pass
them in many small pieces, waking both processes for each). Over the socket, pickled tuples:

    app -> decoder: ("decode", path, min_size, max_pixels, log_levels, small_frame)
                    ("granted", nbytes)                 the answer to a "budget" request
    decoder -> app: ("ready",)                          once, after the imports
                    ("budget", nbytes) / ("release", nbytes)   the app's `pixelbudget.BUDGET`,
                                                        for a frame over small_frame bytes
                    ("log", logger, level, message)     the app logs it (warnings name the file)
                    ("image", mode, size, nbytes, at)   the pixels are in the shared file
                    ("failed", reason)                  `DecodeError`: the one-line reason
                    ("bug", "TypeName: message")        anything else (a bug, logged by the app)

The app may send the next file before this one is done (so no time is lost between files);
requests wait their turn. So that the next image never overwrites one the app has not read yet,
images go to `PLACES` places in the shared file by turns (the app has at most that many files
at a process, and sends the next only once it has read the first's answer). It kills this process when a file takes too long: nothing here needs
to clean up. This ends on its own when the socket closes (the app stopped or died) or after
`idle` seconds without a file.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections import deque
from multiprocessing.connection import Connection

#: Images go to the shared file at 0, 1 GB, 2 GB ... by turns (a sparse file: nothing between).
PLACES = 4
PLACE_BYTES = 1 << 30
#: A decoder with no file to decode for this long ends (the app starts another when needed).
IDLE_SECONDS = 60.0  # (the app passes decoders.IDLE_SECONDS)


class Channel:
    """The socket, with the requests that came while a "budget" question waited its answer."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.waiting: deque[tuple] = deque()

    def next_request(self, idle: float) -> tuple | None:
        if self.waiting:
            return self.waiting.popleft()
        return self.conn.recv() if self.conn.poll(idle) else None


class RemoteBudget:
    """`pixelbudget.Budget` for a decoder process: the app's one budget answers, so the large
    frames decoded in every decoder process at once stay within it. A frame of at most
    `small_frame` bytes (a photo in JPEG draft mode) needs no question."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.small_frame = 0
        self.large = False  # a large frame was decoded since this was last cleared

    def acquire(self, nbytes: int) -> int:
        if nbytes <= self.small_frame:
            return 0
        self.large = True
        self.channel.conn.send(("budget", nbytes))
        while True:
            message = self.channel.conn.recv()
            if message[0] == "granted":
                return message[1]
            self.channel.waiting.append(message)  # the next file, sent ahead

    def release(self, granted: int) -> None:
        if granted:
            self.channel.conn.send(("release", granted))


class ForwardLogs(logging.Handler):
    """Every record logged here goes to the app, which logs it with its own handlers."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            self.conn.send(("log", record.name, record.levelno, message))
        except Exception:  # the app is gone: nothing left to tell
            pass


def main(argv: list[str]) -> int:
    """Serve decode requests on the socket whose file descriptor is argv[0], writing the pixels
    into the file whose descriptor is argv[1]; end after argv[2] seconds without one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the app decides when this process ends
    conn, pixels = Connection(int(argv[0])), int(argv[1])
    idle = float(argv[2]) if len(argv) > 2 else IDLE_SECONDS
    root = logging.getLogger()
    root.handlers[:] = [ForwardLogs(conn)]
    from PIL import Image

    from teddywatch import heap, imaging  # the slow imports (Pillow, its plugins, NumPy)

    heap.keep_freed_heap()

    channel = Channel(conn)
    budget = RemoteBudget(channel)
    levels: dict[str, int] = {}
    images = 0  # written so far (the next goes to place images % PLACES)
    try:
        conn.send(("ready",))
        while (request := channel.next_request(idle)) is not None:
            if request[0] != "decode":
                raise RuntimeError(f"decoder protocol: expected 'decode', got {request[0]!r}")
            _, path, min_size, max_pixels, wanted, budget.small_frame = request
            if wanted != levels:  # (setLevel clears every logger's cache: only on a change)
                for name, level in wanted.items():
                    logging.getLogger(name or None).setLevel(level)
                levels = wanted
            Image.MAX_IMAGE_PIXELS = max_pixels
            at = images % PLACES * PLACE_BYTES
            if _decode_one(conn, pixels, at, imaging, path, min_size, budget):
                images += 1
            if budget.large:  # its strips and copies left the heap in pieces: give them back
                budget.large = False
                heap.trim()
    except (EOFError, OSError):  # the app closed the socket or died
        pass
    return 0


def _decode_one(conn: Connection, pixels: int, at: int, imaging, path: str, min_size: int,
                budget: RemoteBudget) -> bool:
    """Decode one file and answer; True if its pixels went to the shared file at `at`."""
    try:
        image = imaging.decode(path, min_size, budget)
    except imaging.DecodeError as exc:
        conn.send(("failed", str(exc)))
        return False
    except Exception as exc:  # noqa: BLE001 - decode turns decoder errors into DecodeError
        logging.getLogger("teddywatch.decoders").debug("%s: unexpected error decoding", path,
                                                       exc_info=True)
        conn.send(("bug", f"{type(exc).__name__}: {exc}"))
        return False
    with image:
        data = image.tobytes()
    os.pwrite(pixels, data, at)
    conn.send(("image", image.mode, image.size, len(data), at))
    return True


if __name__ == "__main__":  # `python -m teddywatch.decodechild FD` does the same
    sys.exit(main(sys.argv[1:]))
