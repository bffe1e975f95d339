"""What README's quick start promises: `checkin demo` prints a one-time admin sign-in and
the `checkin run` line that serves its clinic; started as printed (both as processes, with
no configuration but a free port), the panel signs the admin in with that e-mail, that
password and a code from the printed otpauth URI, and shows the demo patient's alerts, the
suicidal-thoughts answer of the baseline PHQ-9 first."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from playwright.async_api import Page, expect

from tests.browser import pages

pytestmark = pytest.mark.browser
PRINTED = re.compile(
    r"CHECKIN_DATABASE_URL=(?P<url>\S+) checkin run\n.*?"
    r"e-mail (?P<email>\S+)\s+password (?P<password>\S+)\n.*?(?P<uri>otpauth://\S+)",
    re.DOTALL,
)


def plain_env(**extra: str) -> dict[str, str]:
    """The environment of someone trying the demo: none of the tests' CHECKIN_ settings
    (so the demo makes and uses its own key file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKIN_")}
    return env | {"PYTHONUNBUFFERED": "1"} | extra


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"checkin run exited with {process.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"checkin run did not listen on {port} within {timeout_s} s")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, re.Match[str]]]:
    """`checkin demo --auto` run (its temporary clinic under tmp_path), then its clinic served by `checkin run` as it printed;
    the panel's address and what the demo printed."""
    done = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--auto"],
        capture_output=True, text=True, cwd=tmp_path, env=plain_env(TMPDIR=str(tmp_path)), timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = PRINTED.search(done.stdout)
    assert printed, f"no sign-in in the demo's output:\n{done.stdout}"
    port = free_port()  # the printed line serves on 8080; a test must not assume it is free
    (tmp_path / "config.toml").write_text(f"[server]\nport = {port}\n")
    with (tmp_path / "run.log").open("wb") as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(tmp_path / "config.toml"), "run"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
            env=plain_env(CHECKIN_DATABASE_URL=printed["url"]),
        )  # fmt: skip
        try:
            wait_for_port(port, service)
            yield f"http://127.0.0.1:{port}", printed
        finally:
            service.send_signal(signal.SIGTERM)
            assert service.wait(timeout=20) == 0


async def test_the_demo_admin_signs_in_with_what_checkin_demo_printed(
    demo: tuple[str, re.Match[str]], page: Page
) -> None:
    base_url, printed = demo
    code = pyotp.parse_uri(printed["uri"]).now()
    await pages.sign_in(page, base_url, printed["email"], printed["password"], code)
    await expect(page).to_have_url(f"{base_url}/")
    await expect(page.locator("header .who")).to_have_text("Demo Admin (admin)")
    first = pages.alert_item(page, "Demo Patient").first  # most urgent first
    await expect(first.locator(".what")).to_have_text("Urgent: Suicidal thoughts endorsed")
