"""Fixtures for the studio tests: projects, an in-process client, a real server process, a
headless Chromium (skipped with a printed reason where the Debian package is missing)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy", reason="prefkit[studio] is not installed")
pytest.importorskip("starlette", reason="prefkit[studio] is not installed")

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,900")


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def pair_rows(n: int, prefix: str = "q") -> list[dict[str, str]]:
    return [{"prompt": f"{prefix} prompt {i}", "chosen": f"good answer {i}", "rejected": f"bad answer {i}"}
            for i in range(n)]


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Any]:
    """``make_store(n_pairs=6, **settings) -> (store, directory)`` with imported tasks."""
    from prefkit.studio.store import open_project
    from prefkit.studio.tasks import import_pairs_file

    stores = []

    def make(n_pairs: int = 6, name: str = "proj", **settings: Any) -> tuple[Any, Path]:
        directory = tmp_path / name
        store, _ = open_project(directory, create=True, settings=settings)
        stores.append(store)
        if n_pairs:
            import_pairs_file(store, str(write_jsonl(tmp_path / f"{name}-tasks.jsonl", pair_rows(n_pairs))))
        return store, directory

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def client_for() -> Iterator[Any]:
    """``client_for(store, **app_kwargs) -> TestClient`` (an in-process HTTP client)."""
    from starlette.testclient import TestClient

    from prefkit.studio.app import create_app

    clients = []

    def make(store: Any, **kwargs: Any) -> Any:
        client = TestClient(create_app(store, **kwargs), base_url="http://127.0.0.1")
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(client: Any, token: str) -> None:
    page = client.get("/login")
    response = client.post("/login", data={"token": token, "csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert response.status_code == 303, response.text


class LiveServer:
    """``prefkit studio`` in a subprocess on a free port; ``url``, ``facts`` (its JSON start-up line)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        self.args, self.cwd = args, cwd
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.facts: dict[str, Any] = {}
        self.stderr: list[str] = []

    def start(self, timeout: float = 60) -> LiveServer:
        self.proc = subprocess.Popen([sys.executable, "-m", "prefkit", "studio", *self.args, "--port", "0", "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
                                     cwd=self.cwd)
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()  # type: ignore[union-attr]
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not line or not line[0].strip():
            self.kill()
            raise RuntimeError(f"the studio server did not start: {''.join(self.stderr)}")
        self.facts = json.loads(line[0])
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/login", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the studio server does not answer")

    @property
    def url(self) -> str:
        return self.facts["url"]

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


@pytest.fixture
def live_server() -> Iterator[Any]:
    servers: list[LiveServer] = []

    def start(*args: str, cwd: str | None = None) -> LiveServer:
        server = LiveServer(list(args), cwd=cwd).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two tiny saved policies (different seeds) for generation and the arena."""
    from prefkit.config.schema import TinyConfig
    from prefkit.policy import Policy

    root = tmp_path_factory.mktemp("ckpts")
    texts = ["tell me about the sea", "the sea is blue and wide", "mountains are tall and cold",
             "write a short poem", "a poem about rivers and stones"]
    paths = []
    for name, seed in (("alpha", 1), ("beta", 2)):
        policy = Policy.tiny(texts, TinyConfig(hidden_size=16, layers=1, heads=2, max_position_embeddings=128), seed=seed)
        paths.append(str(policy.save(root / name)))
    return paths


def browser_unavailable() -> str | None:
    """Why no browser test can run here, or None."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return f"Debian chromium / chromium-driver not installed ({CHROMIUM}, {CHROMEDRIVER}); .ci/run installs them"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = browser_unavailable()
    if reason:
        print(f"\nSKIPPED browser tests: {reason}", file=sys.stderr)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="studio-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
