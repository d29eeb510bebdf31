"""Sinks consume Results in order, after the worker classified a file: the results log (the
ledger, first), sorting, notifications.

Each sink may return an annotated Result (sorting records where the file went); the worker
passes that on to the next. A sink that fails is logged and skipped for that result, except that
when a `required` sink fails (the ledger), the sinks after it are skipped too: a file must not be
moved or announced when its row could not be written.

A sink that cannot take results for a while (the results log on a full or read-only disk)
raises `SinkUnavailable`: the worker then holds that result and the ones after it, takes no new
files, and hands them over again, from that sink on, once it can (see `worker.Worker`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from teddywatch.results import Result


class SinkUnavailable(Exception):
    """This sink cannot take results right now (a full disk); try the same result again later.

    The message is one line for people ("cannot write the results log ...: disk full").
    """


@runtime_checkable
class Sink(Protocol):
    #: Short name for log messages.
    name: str
    #: When True, a failure here skips the sinks after it for that result.
    required: bool

    def handle(self, result: Result) -> Result:
        """Consume `result`; return it, or a copy annotated for the sinks after this one."""
        ...

    def close(self) -> None:
        """Flush and release; called once, after the last result."""
        ...
