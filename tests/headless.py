"""Open a local HTML page in headless Chromium: the DOM after its scripts ran, and its console messages.

Chromium 156 (Debian's `chromium`) with `--enable-logging=stderr` prints every console message,
whatever its level, and every uncaught exception the same way:

    [909:909:1126/105128.801556:INFO:CONSOLE:2] "deliberate console.error", source: file:///... (2)

(older versions wrote `INFO:CONSOLE(2)]`). The level is not shown, so the reports' check is
strict: a page of ours must print nothing to the console at all. The rest of stderr (D-Bus,
GPU and sandbox warnings of a container without a desktop) is noise and is ignored.
"""
import os
import re
import shutil
import subprocess
import tempfile

import pytest

CONSOLE_LINE = re.compile(r":CONSOLE\b")


def chromium_or_skip():
    """The chromium binary; skipped when absent, unless REQUIRE_CHROMIUM=1 (CI) makes that a failure."""
    binary = shutil.which("chromium")
    if binary is None:
        message = "chromium is not installed: apt-get install -y --no-install-recommends chromium (CI's .ci/run does)"
        if os.environ.get("REQUIRE_CHROMIUM") == "1":
            pytest.fail(message + " [REQUIRE_CHROMIUM=1]")
        pytest.skip(message)
    return binary


def render(page, timeout=120):
    """Load `page` (a path) in headless Chromium; returns (DOM after the load event, console lines)."""
    binary = chromium_or_skip()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        result = subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
             "--dump-dom", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    console = [line for line in result.stderr.splitlines() if CONSOLE_LINE.search(line)]
    return result.stdout, console


def body_attributes(dom):
    """The data-* attributes the report's script sets on <body>, as a dict of strings."""
    tag = re.search(r"<body\b[^>]*>", dom)
    assert tag, "no <body> in the dumped DOM"
    return dict(re.findall(r'\b(data-[\w-]+)="([^"]*)"', tag.group(0)))
