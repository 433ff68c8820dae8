"""An event loop in a background thread, as the network runs it, for the listener tests."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading

import pytest


class LoopThread:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="aio-test-loop", daemon=True)
        self.thread.start()

    def call(self, fn, *args, timeout: float = 10):
        """Run fn on the loop's thread; returns its result (raises its exception)."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loop_thread():
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture
def sock_dir():
    # sun_path holds 108 bytes, and pytest's tmp_path can be longer than that.
    d = tempfile.mkdtemp(prefix="fnaio")
    yield d
    shutil.rmtree(d, ignore_errors=True)
