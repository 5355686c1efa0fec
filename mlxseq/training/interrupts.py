"""Ctrl-C during training: the first one finishes the step and saves, the second one stops at once."""

import signal
import threading
from contextlib import contextmanager


@contextmanager
def interrupt_flag():
    """Turn the first Ctrl-C into a flag the loop checks after each step (main thread only)."""
    flag = [False]
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        flag[0] = True
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C interrupts at once

    signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: flag[0]
    finally:
        signal.signal(signal.SIGINT, previous)
