"""A real uvicorn server on a loopback port for tests, and a runtime that is slow on purpose.

Shared by tests/serve and tests/hardening.
"""

from __future__ import annotations

import contextlib
import threading
import time


@contextlib.contextmanager
def live_server(runtime, options=None):
    """The app under real uvicorn on a loopback port picked by the OS; stopped on exit.

    Yields ``(url, server, app)``.
    """
    from onnxforge.serve import ServeOptions, bind_socket, create_app, make_server

    options = options or ServeOptions(port=0)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = create_app(runtime, options)
    server = make_server(app, options)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="test-uvicorn")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server, app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


class SlowRuntime:
    """A real runtime whose every ORT call takes ``delay`` seconds longer (for queue and shutdown tests)."""

    def __init__(self, runtime, delay: float):
        self._rt = runtime
        self.delay = delay
        self.calls = 0

    def run(self, feeds, outputs=None):
        self.calls += 1
        time.sleep(self.delay)
        return self._rt.run(feeds, outputs)

    def __getattr__(self, name):
        return getattr(self._rt, name)


def wait_until_ready(url: str, timeout_s: float = 30.0) -> None:
    """Poll ``url``/ready until it answers 200 (a server started as a subprocess)."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.1)
