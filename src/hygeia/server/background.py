"""A background thread that sleeps until woken or polled, and stops on request.

The job runner, the change-feed runners, the alert escalator and the subscription
delivery each run one loop on a thread of the serving process: wait for work (a
poll interval, or a :meth:`BackgroundLoop.wake` from a commit that made some), do
it, repeat until :meth:`BackgroundLoop.stop`. This class is that shared shell; a
subclass writes :meth:`BackgroundLoop.run` and reads ``self.stopping``.
"""

from __future__ import annotations

import threading


class BackgroundLoop:
    """One daemon thread running :meth:`run` until stopped (module docstring)."""

    thread_name = "hygeia-background"

    def __init__(self) -> None:
        self.woken = threading.Event()
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (again after a stop); a running loop is left as it is."""
        if self._thread is not None and self._thread.is_alive():
            return
        self.stopping.clear()
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """There may be work now: look at once rather than at the next poll."""
        self.woken.set()

    def sleep(self, seconds: float) -> None:
        """Wait up to ``seconds``, less when woken or stopped."""
        self.woken.wait(seconds)
        self.woken.clear()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to end, and wait up to ``timeout`` for it."""
        self.stopping.set()
        self.woken.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run(self) -> None:
        """The loop: work, then :meth:`sleep`, until ``self.stopping`` is set."""
        raise NotImplementedError
