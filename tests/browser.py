"""A headless Chromium driven over the Chrome DevTools Protocol (CDP), for tests that must
see a page the way a browser renders it: which images decoded, which scripts threw, what
the console said, and what the whole page looks like.

Debian's ``chromium`` package supplies the browser; the only Python dependency is
``websocket-client`` (pure Python, no dependencies of its own). Playwright would also
work, but it brings a ~165 MB Node.js driver for the few stable CDP commands used here
(Target, Page, Runtime, Log), and it supports only the Chromium build it ships.

The browser runs as a process of its own with a fresh profile in a temporary folder and
is stopped by its own PID (and its children by theirs, see ``targets.runtimes.process``), also when
a check fails.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from targets.errors import TargetStartError
from targets.runtimes.process import ServerProcess

if TYPE_CHECKING:
    import websocket

#: Where Debian's ``chromium`` package puts its launcher (a shell script that execs the
#: browser, so the PID we start is the browser's own).
CHROMIUM = Path("/usr/bin/chromium")
#: The viewport; 1280 px is wider than the report's 1100 px column, so nothing wraps
#: differently from a laptop screen. The screenshot covers the full page, not just this.
WINDOW = (1280, 900)
#: Chromium starts in well under a second here; 30 s allows for a cold disk cache on a
#: fresh CI machine. The same bound applies to each protocol command and to a page's load.
TIMEOUT_S = 30.0

FLAGS = (
    "--headless",                 # the new headless mode: the only one since Chromium 132
    "--no-sandbox",               # Chromium refuses to run as root sandboxed; CI is root
    "--disable-gpu",              # no GPU on the test machines: software rendering only
    # Without these Chromium keeps dialling Google services (field trials, component and
    # safe-browsing updates, sync, QUIC probes), which on a machine without internet
    # means a steady stream of failing connections and retries.
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-default-browser-check",
    # Debian's launcher adds this when /dev/shm is small (containers get 64 MiB), but its
    # check breaks when /dev/shm is mounted twice and findmnt prints two lines (as on the
    # Debian 12 development machine: "[: ...: unexpected operator" on stderr). Shared
    # memory through /tmp is fine for one test page.
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",  # any free port; Chromium prints the one it took
)

_DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://\S+)")

#: Runs in the page after its load event. ``decode()`` settles once an image is ready to
#: paint (it rejects for a broken one), so ``complete`` and ``naturalWidth`` are final.
_IMAGES_JS = """
(async () => {
  const images = [...document.images];
  await Promise.allSettled(images.map((img) => img.decode()));
  return images.map((img) => ({
    complete: img.complete,
    width: img.naturalWidth,
    height: img.naturalHeight,
    alt: img.alt,
    src: (img.getAttribute("src") || "").slice(0, 40),
  }));
})()
"""


class BrowserError(Exception):
    """The browser could not be started or did not answer as the protocol says."""


class BrowserUnavailable(BrowserError):
    """No browser (or no CDP client library) on this machine: the caller decides whether
    that skips or fails a test."""


@dataclass(frozen=True)
class Image:
    index: int
    complete: bool
    width: int
    height: int
    alt: str
    src: str  # the first 40 characters of the src attribute

    @property
    def loaded(self) -> bool:
        return self.complete and self.width > 0


@dataclass(frozen=True)
class PageReport:
    """What the browser saw on one page."""

    url: str
    images: tuple[Image, ...]
    errors: tuple[str, ...]     # exceptions, console.error()s and log errors, in order
    size: tuple[int, int]       # the whole page in CSS pixels (width, height)
    screenshot: bytes           # PNG of the whole page, not just the viewport

    @property
    def loaded(self) -> tuple[Image, ...]:
        return tuple(img for img in self.images if img.loaded)

    @property
    def broken(self) -> tuple[Image, ...]:
        return tuple(img for img in self.images if not img.loaded)


def _describe_error(method: str, params: dict[str, Any]) -> str | None:
    """One line for an event that reports an error, or None for any other event."""
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        thrown = details.get("exception", {}).get("description") or details.get("text", "")
        return f"uncaught exception: {thrown} (line {details.get('lineNumber', 0) + 1})"
    if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        args = " ".join(str(arg.get("value", arg.get("description", "")))
                        for arg in params.get("args", []))
        return f"console.{params['type']}: {args}"
    if method == "Log.entryAdded" and params["entry"]["level"] == "error":
        entry = params["entry"]
        where = f" ({entry['url']})" if entry.get("url") else ""
        return f"{entry['source']} error: {entry['text']}{where}"
    return None


class _Connection:
    """One CDP websocket: commands answered by id, events kept until asked for."""

    def __init__(self, url: str) -> None:
        try:
            # Optional (the dev extras): without it, a clear error rather than an import's.
            import websocket  # noqa: PLC0415
        except ImportError as exc:
            raise BrowserUnavailable(
                "the websocket-client package is not installed; install the dev extras "
                "with `pip install -e '.[dev]'`"
            ) from exc
        self._timeout_error = websocket.WebSocketTimeoutException
        # Chromium rejects a websocket whose Origin header it was not told to allow
        # (--remote-allow-origins); a client that sends none is accepted.
        self._ws: websocket.WebSocket = websocket.create_connection(
            url, timeout=TIMEOUT_S, suppress_origin=True)
        self._next_id = 0
        self.events: list[tuple[str, str | None, dict[str, Any]]] = []

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method,
                                   "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._receive(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result
            if "method" in reply:
                self.events.append((reply["method"], reply.get("sessionId"),
                                    reply.get("params", {})))

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        """The first event ``method`` from ``session``, received or still to come."""
        deadline = time.monotonic() + TIMEOUT_S
        seen = 0
        while True:
            for name, sid, params in self.events[seen:]:
                if name == method and sid == session:
                    return params
            seen = len(self.events)
            reply = self._receive(deadline, method)
            if "method" in reply:
                self.events.append((reply["method"], reply.get("sessionId"),
                                    reply.get("params", {})))

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrowserError(f"no answer to {waiting_for} within {TIMEOUT_S:.0f} s")
        self._ws.settimeout(remaining)
        try:
            reply: dict[str, Any] = json.loads(self._ws.recv())
        except self._timeout_error as exc:
            raise BrowserError(f"no answer to {waiting_for} within {TIMEOUT_S:.0f} s") from exc
        return reply

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the browser may have closed it already
            self._ws.close()


class Chromium:
    """A headless Chromium for the length of a ``with`` block.

    ``open(url)`` loads a page in a new tab and reports its images, errors and a
    full-page screenshot. Leaving the block closes the browser and removes its profile.
    """

    def __init__(self, executable: Path = CHROMIUM) -> None:
        self.executable = executable
        self._stack = contextlib.ExitStack()
        self._process: ServerProcess | None = None
        self._cdp: _Connection | None = None

    def __enter__(self) -> Chromium:
        if not self.executable.exists():
            raise BrowserUnavailable(
                f"no Chromium at {self.executable}; install it with "
                "`apt-get install --no-install-recommends chromium`"
            )
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _start(self) -> None:
        root = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="chromium-")))
        log = root / "chromium.log"
        width, height = WINDOW
        self._process = ServerProcess(
            [str(self.executable), *FLAGS, f"--user-data-dir={root / 'profile'}",
             f"--window-size={width},{height}", "about:blank"],
            log_path=log,
        )
        self._process.launch()
        self._stack.callback(self._process.stop)
        url: list[str] = []

        def listening() -> bool:
            found = _DEVTOOLS_LINE.search(log.read_text(errors="replace"))
            if found:
                url.append(found.group(1))
            return found is not None

        try:
            self._process.wait_ready(listening, TIMEOUT_S, f"headless Chromium ({self.executable})")
        except TargetStartError as exc:
            raise BrowserError(str(exc)) from exc
        self._cdp = _Connection(url[0])
        self._stack.callback(self._cdp.close)

    def open(self, url: str) -> PageReport:
        cdp = self._cdp
        if cdp is None:
            raise BrowserError("the browser is not running (use it in a `with` block)")
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        try:
            # One connection for the browser and its tabs ("flattened" sessions).
            session = cdp.send("Target.attachToTarget",
                               {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                cdp.send(f"{domain}.enable", session=session)
            first_event = len(cdp.events)
            navigated = cdp.send("Page.navigate", {"url": url}, session=session)
            if navigated.get("errorText"):
                raise BrowserError(f"cannot open {url}: {navigated['errorText']}")
            cdp.wait_for("Page.loadEventFired", session)
            found = cdp.send("Runtime.evaluate", {"expression": _IMAGES_JS, "awaitPromise": True,
                                                  "returnByValue": True}, session=session)
            if "exceptionDetails" in found:
                raise BrowserError(f"the image check failed: {found['exceptionDetails']}")
            images = tuple(Image(index=i, **img) for i, img in enumerate(found["result"]["value"]))
            content = cdp.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            size = (int(content["width"]), int(content["height"]))
            shot = cdp.send("Page.captureScreenshot", {
                "format": "png",
                "captureBeyondViewport": True,  # the whole page, below the fold too
                "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
            }, session=session)
            errors = tuple(
                line for name, sid, params in cdp.events[first_event:]
                if sid == session and (line := _describe_error(name, params)) is not None
            )
        finally:
            cdp.events.clear()
            # A browser that crashed cannot close the tab; keep the error that told why.
            with contextlib.suppress(Exception):
                cdp.send("Target.closeTarget", {"targetId": target})
        return PageReport(url=url, images=images, errors=errors, size=size,
                          screenshot=base64.b64decode(shot["data"]))

    def close(self) -> None:
        """Ask the browser to quit, then stop it (and its children) by PID whatever happened."""
        if self._cdp is not None:
            with contextlib.suppress(Exception):
                self._cdp.send("Browser.close")
            self._cdp = None
        self._stack.close()
