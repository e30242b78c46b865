"""End to end in headless Chromium (Debian's package, driven by Selenium): sign in with a token,
label with the keyboard and the mouse, critique, undo, two tabs, the back button, CSRF, XSS,
arena identities, the leaderboard, kill -9 between votes, and the exported file.

Skipped, with the reason printed, only where /usr/bin/chromium or /usr/bin/chromedriver is
missing (``.ci/run`` installs them). ``PREFKIT_STUDIO_SCREENSHOTS=DIR`` saves the screenshots
docs/studio.md shows.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from prefkit.studio import queue
from prefkit.studio.annotators import add_annotator
from prefkit.studio.export import vote_rows
from prefkit.studio.store import open_project
from prefkit.studio.tasks import TaskRow, import_pairs_file, store_rows
from tests.studio.conftest import LiveServer, write_jsonl

pytestmark = pytest.mark.slow

TASKS = [
    {"prompt": "Explain what a **hash function** is, in two sentences.",
     "chosen": "A hash function maps data of any size to a fixed-size value.\n\nGood ones spread inputs evenly and "
               "make collisions rare, which is what makes `dict` lookups fast.",
     "rejected": "Hash functions are functions. They hash things, like a *hash browns* recipe."},
    {"prompt": "Give one tip for writing readable Python.", "chosen": "Name things for what they mean: `retries_left`, "
     "not `r`.", "rejected": "Use one-letter names everywhere so lines stay short."},
    {"prompt": "What is the boiling point of water at sea level?", "chosen": "100 °C (212 °F) at 1 atm.",
     "rejected": "About 50 °C, depending on the pot."},
    {"prompt": "Summarise the plot of *Hamlet* in one line.", "chosen": "A Danish prince avenges his father's murder "
     "and nearly everyone dies.", "rejected": "A play about a small pig."},
    {"prompt": "Translate 'good morning' into French.", "chosen": "Bonjour.", "rejected": "Buenos días."},
    {"prompt": "Name a prime number between 20 and 30.", "chosen": "23 (or 29).", "rejected": "It is 25."},
    {"prompt": "What does HTTP 404 mean?", "chosen": "The server found no resource at that URL.",
     "rejected": "The server is on fire."},
    {"prompt": "Suggest a name for a cat.", "chosen": "Miso.", "rejected": "Cat."},
]
PAYLOAD = ('<script>window.__xss = 1</script> <img src=x onerror="window.__xss = 2"> '
           '<a href="javascript:window.__xss = 3">raw link</a> [md link](javascript:window.__xss=4) '
           '<svg onload="window.__xss = 5"></svg>')


def _screenshot(driver, name):
    target = os.environ.get("PREFKIT_STUDIO_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        size = driver.get_window_size()
        driver.set_window_size(1280, 1000)
        driver.save_screenshot(str(Path(target) / name))
        driver.set_window_size(size["width"], size["height"])


@pytest.fixture(scope="module")
def main_project(tmp_path_factory, tiny_checkpoints):
    root = tmp_path_factory.mktemp("browser")
    store, _ = open_project(root / "main", create=True, settings={"overlap_k": 2, "guideline_md":
                                                                   "Prefer the **correct**, concise answer."})
    import_pairs_file(store, str(write_jsonl(root / "tasks.jsonl", TASKS)))
    tokens = {h: add_annotator(store, h, role="admin" if h == "owner" else "annotator")[1]
              for h in ("owner", "alice", "bob")}
    store.close()
    prompts = write_jsonl(root / "arena-prompts.jsonl", [{"prompt": "tell me about the sea"}])
    args = ["--project", str(root / "main"), "--arena", *tiny_checkpoints, "--arena-prompts", str(prompts),
            "--max-new-tokens", "8"]
    server = LiveServer(args).start()
    state = {"server": server, "tokens": tokens, "root": root, "args": args}
    yield state
    state["server"].kill()


@pytest.fixture(scope="module")
def strict_project(tmp_path_factory):
    """Ties off, critique required, an XSS task, and seeded battles for the leaderboard."""
    root = tmp_path_factory.mktemp("strict")
    store, _ = open_project(root / "strict", create=True, settings={"allow_tie": False, "critique": "required"})
    import_pairs_file(store, str(write_jsonl(root / "xss.jsonl", [
        {"prompt": "Render this: " + PAYLOAD, "chosen": "First: " + PAYLOAD, "rejected": "Second: " + PAYLOAD}])))
    strength = {"ckpt-strong": 1.5, "ckpt-medium": 0.3, "ckpt-weak": -1.2}
    import numpy as np

    rng = np.random.default_rng(0)
    rows, names = [], list(strength)
    for i in range(90):
        a, b = rng.choice(names, 2, replace=False)
        rows.append(TaskRow(f"battle prompt {i}", f"answer {i} from {a}", f"answer {i} from {b}", ("seed", i + 1),
                            f"/models/{a}", f"/models/{b}"))
    store_rows(store, rows, origin="generated", source="seed")
    seeder, _ = add_annotator(store, "seeder")
    for i in range(90):
        task = queue.next_task(store, seeder.id)
        if "battle prompt" not in task.prompt:  # the XSS task: leave it to the browser
            queue.vote(store, seeder.id, task.assignment_id, "left", critique="seed", nonce=f"seed-x-{i:04d}")
            task = queue.next_task(store, seeder.id)
        left, right = task.left.rsplit(" ", 1)[1], task.right.rsplit(" ", 1)[1]
        p_left = 1 / (1 + np.exp(strength[right] - strength[left]))
        queue.vote(store, seeder.id, task.assignment_id, "left" if rng.random() < p_left else "right",
                   critique="seed", nonce=f"seed-{i:04d}")
    tokens = {"carol": add_annotator(store, "carol")[1]}
    # the seeder took the XSS task; give carol her own copy to look at
    import_pairs_file(store, str(write_jsonl(root / "xss2.jsonl", [
        {"prompt": "Again: " + PAYLOAD, "chosen": "One: " + PAYLOAD, "rejected": "Two: " + PAYLOAD}])))
    store.close()
    server = LiveServer(["--project", str(root / "strict")]).start()
    yield {"server": server, "tokens": tokens, "root": root}
    server.kill()


def sign_in(driver, url, token):
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get("about:blank")  # a fresh page load, with a fresh session and CSRF token
    driver.get(f"{url}/login#token={token}")
    assert driver.find_element(By.ID, "token").get_attribute("value") == token  # filled from the fragment
    assert "token=" not in driver.current_url  # and removed from the address bar
    driver.find_element(By.ID, "sign-in").click()
    _wait(driver, lambda: driver.current_url.endswith("/label"))


def _wait(driver, condition, timeout=20):
    """Until ``condition()`` holds on a fully loaded page (its script attached)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        lambda _: driver.execute_script("return document.readyState") == "complete" and condition())


def _votes(project):
    store, _ = open_project(project)
    try:
        return vote_rows(store)
    finally:
        store.close()


def _plain(text):
    """Markdown source or rendered text, without emphasis and code markers, spaces collapsed."""
    return " ".join(text.replace("*", "").replace("`", "").split())


def _current(driver):
    from selenium.webdriver.common.by import By

    return {
        "assignment": driver.find_element(By.NAME, "assignment").get_attribute("value"),
        "left": driver.find_element(By.CSS_SELECTOR, "#response-left .text").text,
        "right": driver.find_element(By.CSS_SELECTOR, "#response-right .text").text,
    }


def test_1_sign_in_cookie_and_redirects(browser, main_project):
    url = main_project["server"].url
    browser.delete_all_cookies()
    browser.get(f"{url}/label")
    assert browser.current_url.endswith("/login")  # logged out: redirected
    sign_in(browser, url, main_project["tokens"]["alice"])
    cookie = browser.get_cookie("prefkit_studio")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # invisible to scripts


def test_3_4_7_label_with_keyboard_and_mouse(browser, main_project):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, project = main_project["server"].url, main_project["root"] / "main"
    sign_in(browser, url, main_project["tokens"]["alice"])
    submit = browser.find_element(By.ID, "submit")
    assert not submit.is_enabled()  # check 4: disabled until a choice
    clicked = []
    # keyboard: 1 = A (left), Enter submits
    task = _current(browser)
    browser.find_element(By.TAG_NAME, "body").send_keys("1")
    assert browser.find_element(By.ID, "choice-left").is_selected() and submit.is_enabled()
    _screenshot(browser, "studio-label.png")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER)
    _wait(browser, lambda: _current(browser)["assignment"] != task["assignment"])
    clicked.append((task, "left"))
    # mouse: B, a critique, a confidence; the submit button clicked twice (double click)
    task = _current(browser)
    browser.find_element(By.ID, "choice-right").click()
    browser.find_element(By.ID, "critique").send_keys("B is correct; A is off topic.")
    browser.find_element(By.CSS_SELECTOR, "#confidence option[value='4']").click()
    browser.execute_script("const b = document.getElementById('submit'); b.click(); b.click();")
    _wait(browser, lambda: _current(browser)["assignment"] != task["assignment"])
    clicked.append((task, "right"))
    for _ in range(4):  # more votes with the keyboard, alternating sides
        task = _current(browser)
        key = "1" if len(clicked) % 2 else "2"
        browser.find_element(By.TAG_NAME, "body").send_keys(key, Keys.ENTER)
        _wait(browser, lambda task=task: _current(browser)["assignment"] != task["assignment"])
        clicked.append((task, "left" if key == "1" else "right"))
    rows = [r for r in _votes(project) if r["annotator"] == "alice" and r["origin"] != "arena"]
    assert len(rows) == len(clicked) == 6  # the double click stored one vote
    for row, (task, side) in zip(rows, clicked):  # check 3: the clicked response is the winner
        assert _plain(row["chosen"]) == _plain(task[side]) and row["position"] == side and row["annotator"] == "alice"
    assert rows[1]["critique"] == "B is correct; A is off topic." and rows[1]["confidence"] == 4
    store, _ = open_project(project)
    from sqlalchemy import select

    from prefkit.studio.schema import Assignment

    with store.read() as s:
        sides = set(s.scalars(select(Assignment.left_is_a)))
    store.close()
    assert sides == {True, False}  # both orders occur (randomised in blocks of two)
    # undo with the keyboard: the last task comes back, the vote is gone
    before = _current(browser)
    browser.find_element(By.TAG_NAME, "body").send_keys("u")
    _wait(browser, lambda: _current(browser)["assignment"] != before["assignment"])
    assert _current(browser)["left"] in (clicked[-1][0]["left"], clicked[-1][0]["right"])
    assert len([r for r in _votes(project) if r["annotator"] == "alice" and r["origin"] != "arena"]) == 5
    assert "taken back" in browser.find_element(By.CLASS_NAME, "flash").text


def test_7_two_tabs_and_the_back_button_store_one_vote(browser, main_project):
    from selenium.webdriver.common.by import By

    url, project = main_project["server"].url, main_project["root"] / "main"
    sign_in(browser, url, main_project["tokens"]["bob"])
    first_tab = browser.current_window_handle
    task = _current(browser)
    browser.switch_to.new_window("tab")
    browser.get(f"{url}/label")
    assert _current(browser)["assignment"] == task["assignment"]  # the same task in both tabs
    browser.find_element(By.ID, "choice-left").click()
    browser.find_element(By.ID, "submit").click()
    _wait(browser, lambda: _current(browser)["assignment"] != task["assignment"])
    browser.close()
    browser.switch_to.window(first_tab)
    browser.find_element(By.ID, "choice-right").click()
    browser.find_element(By.ID, "submit").click()  # the stale tab
    _wait(browser, lambda: "already has your vote" in browser.page_source)
    browser.back()
    browser.back()
    if browser.find_elements(By.ID, "choice-left"):
        browser.find_element(By.ID, "choice-left").click()
        browser.find_element(By.ID, "submit").click()
    bob = [r for r in _votes(project) if r["annotator"] == "bob"]
    assert len(bob) == 1 and _plain(bob[0]["chosen"]) == _plain(task["left"])
    pairs = [r["pair_id"] for r in _votes(project)]
    per_annotator = {(r["pair_id"], r["annotator"]) for r in _votes(project)}
    assert len(per_annotator) == len(pairs)  # nobody voted on a pair twice


def test_6_csrf_and_another_annotators_cookie(browser, main_project):
    url, project = main_project["server"].url, main_project["root"] / "main"
    sign_in(browser, url, main_project["tokens"]["alice"])
    alice_assignment = _current(browser)["assignment"]
    status = browser.execute_script("""
        const body = new URLSearchParams({assignment: arguments[0], choice: 'left', nonce: 'forged-nonce-1'});
        return fetch('/vote', {method: 'POST', body: body, redirect: 'manual'}).then(r => r.status);
    """, alice_assignment)
    assert status == 403
    before = len(_votes(project))
    sign_in(browser, url, main_project["tokens"]["bob"])
    status = browser.execute_script("""
        const csrf = document.querySelector('input[name=csrf_token]').value;
        const body = new URLSearchParams({csrf_token: csrf, assignment: arguments[0], choice: 'left',
                                          nonce: 'cross-nonce-1'});
        return fetch('/vote', {method: 'POST', body: body, redirect: 'manual'}).then(r => r.status);
    """, alice_assignment)
    assert status == 403
    assert len(_votes(project)) == before


def test_2_arena_hides_identities_until_the_vote(browser, main_project):
    from selenium.webdriver.common.by import By

    url = main_project["server"].url
    sign_in(browser, url, main_project["tokens"]["alice"])
    browser.get(f"{url}/arena")
    browser.find_element(By.ID, "arena-prompt").send_keys("tell me about the sea")
    browser.find_element(By.ID, "battle").click()
    _wait(browser, lambda: "/arena/battle/" in browser.current_url)
    source = browser.page_source + browser.execute_script("return document.documentElement.outerHTML")
    assert "alpha" not in source and "beta" not in source  # check 2: no checkpoint name in the DOM
    battle = browser.current_url.rsplit("/", 1)[1]
    browser.get(f"{url}/arena/reveal/{battle}")
    assert "vote first" in browser.page_source  # no peeking before the vote
    browser.get(f"{url}/arena/battle/{battle}")
    browser.find_element(By.ID, "choice-left").click()
    browser.find_element(By.ID, "submit").click()
    _wait(browser, lambda: "/arena/reveal/" in browser.current_url)
    shown = {browser.find_element(By.ID, "left-model").text, browser.find_element(By.ID, "right-model").text}
    assert shown == {"alpha", "beta"}


def test_4_5_tie_hidden_required_critique_and_inert_xss(browser, strict_project):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    url, project = strict_project["server"].url, strict_project["root"] / "strict"
    sign_in(browser, url, strict_project["tokens"]["carol"])
    assert browser.execute_script("return window.__xss") is None
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    scripts = browser.execute_script("return Array.from(document.scripts).map(s => s.src)")
    assert scripts == [f"{url}/static/studio.js"]
    assert browser.find_elements(By.CSS_SELECTOR, "img, svg, [onerror], [onload]") == []
    hrefs = browser.execute_script("return Array.from(document.links).map(a => a.getAttribute('href'))")
    assert not [h for h in hrefs if h and h.lower().startswith("javascript")]
    assert "<script>window.__xss = 1</script>" in browser.find_element(By.ID, "prompt").text  # shown as text
    for link in browser.find_elements(By.CSS_SELECTOR, ".response a"):
        link.click()
    assert browser.execute_script("return window.__xss") is None
    assert browser.find_elements(By.ID, "choice-tie") == []  # check 4: tie is off here
    browser.find_element(By.TAG_NAME, "body").send_keys("3")
    browser.find_element(By.ID, "choice-left").click()
    submit = browser.find_element(By.ID, "submit")
    assert not submit.is_enabled()  # a required critique blocks
    browser.find_element(By.ID, "critique").send_keys("Both echo the markup; the first is shorter.")
    assert submit.is_enabled()
    submit.click()
    _wait(browser, lambda: browser.find_elements(By.ID, "no-tasks"))
    carol = [r for r in _votes(project) if r["annotator"] == "carol"]
    assert len(carol) == 1 and carol[0]["critique"].startswith("Both echo")


def test_8_leaderboard_from_seeded_votes(browser, strict_project):
    from selenium.webdriver.common.by import By

    url = strict_project["server"].url
    sign_in(browser, url, strict_project["tokens"]["carol"])
    browser.get(f"{url}/leaderboard")
    _screenshot(browser, "studio-leaderboard.png")
    rows = browser.find_elements(By.CSS_SELECTOR, "#ratings tbody tr")
    cells = [[c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in rows]
    assert [c[1] for c in cells] == ["ckpt-strong", "ckpt-medium", "ckpt-weak"]
    ratings = [float(c[2]) for c in cells]
    lows, highs, ranks = [float(c[3]) for c in cells], [float(c[4]) for c in cells], [int(c[0]) for c in cells]
    assert ratings == sorted(ratings, reverse=True)
    assert all(lo <= r <= hi for lo, r, hi in zip(lows, ratings, highs))
    for i, rank in enumerate(ranks):  # rank = 1 + models whose lower bound beats this upper bound
        assert rank == 1 + sum(lows[j] > highs[i] for j in range(3))
    assert sum(int(c[5]) for c in cells) == 2 * 90
    assert browser.find_elements(By.CSS_SELECTOR, "#win-rate tbody tr")


def test_kill_9_between_votes_then_export(browser, main_project, tmp_path):
    from selenium.webdriver.common.by import By

    project = main_project["root"] / "main"
    server = main_project["server"]
    sign_in(browser, server.url, main_project["tokens"]["owner"])
    before = len(_votes(project))
    task = _current(browser)
    browser.find_element(By.ID, "choice-left").click()
    browser.find_element(By.ID, "submit").click()
    _wait(browser, lambda: browser.find_elements(By.ID, "no-tasks") or _current(browser)["assignment"] != task["assignment"])
    server.kill()  # SIGKILL between two votes
    restarted = LiveServer(main_project["args"]).start()
    main_project["server"] = restarted
    browser.get(f"{restarted.url}/mine")  # the signed cookie still holds: same project secret
    assert "My votes (1)" in browser.page_source
    rows = _votes(project)
    assert len(rows) == before + 1 and _plain(rows[-1]["chosen"]) == _plain(task["left"])
    out = tmp_path / "votes.jsonl"
    from prefkit.cli.main import main

    assert main(["studio", "export", "--project", str(project), "--out", str(out)]) == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert {"prompt", "chosen", "rejected", "label", "annotator", "critique", "confidence", "position",
            "duration_ms"} <= set(exported[0])
    assert len(exported) == len(rows) and all(r["duration_ms"] is None or r["duration_ms"] >= 0 for r in exported)
    assert exported[0]["duration_ms"] > 0  # measured by the page
    time.sleep(0)
