"""Ctrl-C during training: the first press asks the Trainer to stop after the
step in progress (so the checkpoint it saves is of a whole step); a second
press raises KeyboardInterrupt at once, as Python normally would."""
from __future__ import annotations

import signal
import sys
import threading


class StopRequest:
    """A context manager that turns the first SIGINT into `requested = True`.

    Signal handlers can only be installed from the main thread; elsewhere
    (fit() run in a worker thread) Ctrl-C reaches the main thread anyway, so
    this does nothing there.
    """

    def __init__(self):
        self.requested = False
        self._installed = False
        self._previous = None

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _restore(self) -> None:
        # None: the previous handler was not installed from Python; the default is the closest.
        signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.SIG_DFL)

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self._restore()
        print("\ntinylm: Ctrl-C: stopping after this step and saving a checkpoint "
              "(press Ctrl-C again to stop now)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self._installed:
            self._restore()
