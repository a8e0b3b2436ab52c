"""Stop within 2 seconds on SIGINT or SIGTERM, leaving the feature cache consistent.

The first signal raises :class:`Interrupted` in the main thread: Lightning tears the run down (its callbacks' ``on_exception``
flush the rows computed so far, see ``CacheWriter``), shards are written whole or not at all (temporary file +
``os.replace``) and the command exits with status 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM). Python
runs signal handlers only between bytecodes, so a long native call (one big batch through a network) would delay that;
a watcher thread, woken through ``signal.set_wakeup_fd``, therefore ends the process with the same status if it is
still alive ``GRACE_S`` seconds after the signal. A second signal ends it at once. Either way nothing in the cache can
be half-written: an interrupted shard is a ``.tmp`` file that readers ignore.
"""

from __future__ import annotations

import os
import signal
import threading

GRACE_S = 1.5
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):  # noqa: N818  (like KeyboardInterrupt: not an Exception, so nothing swallows it)
    """The command received SIGINT or SIGTERM."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


_state = {"signum": 0}


def _say(text: str) -> None:
    try:
        os.write(2, text.encode())  # not print(): the handler may run while sys.stderr is mid-write
    except OSError:
        pass


def _newline() -> str:
    """Start on a fresh line when a progress bar may be drawn on the terminal."""
    try:
        return "\n" if os.isatty(2) else ""
    except OSError:
        return ""


def _handler(signum, frame) -> None:
    if _state["signum"]:
        os._exit(128 + _state["signum"])
    _state["signum"] = signum
    _say(f"{_newline()}negate: {signal.Signals(signum).name} received, stopping (finished work is kept in the cache; run the same "
         "command again to resume)\n")
    raise Interrupted(signum)


def _watch(read_fd: int) -> None:
    while True:
        try:
            data = os.read(read_fd, 1)
        except OSError:
            return
        if not data:
            return
        if data[0] in [int(s) for s in SIGNALS]:
            threading.Event().wait(GRACE_S)
            _say(f"negate: still running {GRACE_S:.1f} s after the signal; exiting now\n")
            os._exit(128 + data[0])


def install() -> None:
    """Install the handlers (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        signal.signal(signum, _handler)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read_fd,), name="negate-signal-watch", daemon=True).start()
