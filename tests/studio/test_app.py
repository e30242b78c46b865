"""The web app without a browser: sessions, CSRF, ownership, limits, escaping, the JSON API."""

from __future__ import annotations

import re

import pytest

from prefkit.studio.annotators import add_annotator, set_active
from tests.studio.conftest import csrf_of, sign_in

XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> [link](javascript:alert(1))'


@pytest.fixture
def app_setup(make_store, client_for):
    store, _directory = make_store(4)
    _, owner = add_annotator(store, "owner", role="admin")
    _, alice = add_annotator(store, "alice")
    return store, client_for(store), owner, alice


def test_sign_in_sets_an_httponly_samesite_cookie(app_setup):
    _store, client, owner, _ = app_setup
    page = client.get("/login")
    response = client.post("/login", data={"token": owner, "csrf_token": csrf_of(page.text)}, follow_redirects=False)
    cookie = response.headers["set-cookie"].lower()
    assert response.status_code == 303 and response.headers["location"] == "/label"
    assert "httponly" in cookie and "samesite=strict" in cookie and "prefkit_studio=" in cookie
    assert owner not in response.headers["set-cookie"]  # the token is never in the cookie
    headers = client.get("/label").headers
    assert "script-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"


def test_pages_redirect_to_sign_in_when_logged_out(app_setup):
    _, client, _, _ = app_setup
    for path in ("/label", "/mine", "/leaderboard", "/admin", "/"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login", path
    assert client.get("/api/task").status_code == 401


def test_unknown_and_revoked_tokens_are_refused(app_setup):
    store, client, _, alice = app_setup
    page = client.get("/login")
    response = client.post("/login", data={"token": "not-a-token", "csrf_token": csrf_of(page.text)})
    assert response.status_code == 401 and "unknown token" in response.text
    sign_in(client, alice)
    assert client.get("/label").status_code == 200
    set_active(store, "alice", False)  # the open session ends at its next request
    assert client.get("/label", follow_redirects=False).headers["location"] == "/login"
    page = client.get("/login")
    response = client.post("/login", data={"token": alice, "csrf_token": csrf_of(page.text)})
    assert response.status_code == 401 and "revoked" in response.text
    assert client.get("/api/task", headers={"authorization": f"Bearer {alice}"}).status_code == 401


def test_every_post_route_refuses_a_missing_or_wrong_csrf_token(app_setup):
    _, client, owner, _ = app_setup
    sign_in(client, owner)
    posts = [r for r in client.app.routes if "POST" in getattr(r, "methods", set())]
    assert len(posts) == 9  # login, logout, vote, undo, 2 admin, arena battle, api vote, api undo
    for route in posts:
        path = route.path.replace("{action:str}", "revoke").replace("{assignment:int}", "1")
        for data in ({}, {"csrf_token": "forged"}):
            response = client.post(path, data=data, follow_redirects=False)
            assert response.status_code in (403, 404), (path, response.status_code)
            if response.status_code == 404:  # the arena routes without an arena
                assert path.startswith("/arena")
        if path.startswith("/api/"):
            assert client.post(path, json={}, headers={"x-csrf-token": "forged"}).status_code == 403


def test_the_form_with_its_token_submits(app_setup):
    _store, client, _, alice = app_setup
    sign_in(client, alice)
    page = client.get("/label").text
    fields = {name: value for name, value in re.findall(r'name="(\w+)" value="([^"]*)"', page)}
    response = client.post("/vote", data={**fields, "choice": "left", "critique": "A is on topic"},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/label"
    me = client.get("/api/me").json()
    assert me["votes"] == 1 and me["latest"][0]["critique"] == "A is on topic"


def test_another_annotators_cookie_cannot_vote_on_my_task(app_setup, client_for):
    store, client, owner, alice = app_setup
    sign_in(client, alice)
    page = client.get("/label").text
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page))
    intruder = client_for(store)
    sign_in(intruder, owner)
    own_csrf = csrf_of(intruder.get("/label").text)
    response = intruder.post("/vote", data={**fields, "csrf_token": own_csrf, "choice": "left"}, follow_redirects=False)
    assert response.status_code == 403 and "not yours" in response.text
    api = intruder.post("/api/vote", json={"assignment": int(fields["assignment"]), "choice": "left",
                                           "nonce": "intruder-01"}, headers={"x-csrf-token": own_csrf})
    assert api.status_code == 403
    assert client.get("/api/me").json()["votes"] == 0


def test_bearer_api_round_trip(app_setup):
    _, client, _, alice = app_setup
    auth = {"authorization": f"Bearer {alice}"}
    task = client.get("/api/task", headers=auth).json()["task"]
    assert set(task) == {"assignment", "prompt", "left", "right"}
    vote = client.post("/api/vote", json={"assignment": task["assignment"], "choice": "right", "nonce": "api-nonce-1",
                                          "confidence": 4, "duration_ms": 1200}, headers=auth)
    assert vote.status_code == 200 and vote.json()["verdict"] in ("a", "b")
    again = client.post("/api/vote", json={"assignment": task["assignment"], "choice": "right", "nonce": "api-nonce-1"},
                        headers=auth)
    assert again.json()["duplicate"] is True
    status = client.get("/api/status", headers=auth).json()
    assert (status["labels"], status["mine"], status["pairs"]) == (1, 1, 4)
    assert client.post("/api/undo", json={}, headers=auth).json()["reopened"] == task["assignment"]
    bad = client.post("/api/vote", json={"assignment": task["assignment"], "choice": "up", "nonce": "api-nonce-2"},
                      headers=auth)
    assert bad.status_code == 400 and bad.json()["field"] == "choice"


def test_request_bodies_over_the_limit_are_refused(app_setup):
    from prefkit.studio.security import MAX_BODY_BYTES

    _, client, _, alice = app_setup
    response = client.post("/api/vote", content=b"x" * (MAX_BODY_BYTES + 1),
                           headers={"authorization": f"Bearer {alice}", "content-type": "application/json"})
    assert response.status_code == 413


def test_admin_page_is_for_admins_and_shows_a_new_token_once(app_setup, client_for):
    store, client, owner, alice = app_setup
    sign_in(client, alice)
    assert client.get("/admin").status_code == 403
    admin = client_for(store)
    sign_in(admin, owner)
    page = admin.get("/admin")
    assert page.status_code == 200 and "Fleiss" in page.text
    created = admin.post("/admin/annotators", data={"handle": "dora", "role": "annotator",
                                                    "csrf_token": csrf_of(page.text)})
    token = re.search(r'<code id="token-value">([^<]+)</code>', created.text).group(1)
    assert client_for(store).get("/api/task", headers={"authorization": f"Bearer {token}"}).status_code == 200
    assert token not in admin.get("/admin").text


def test_model_output_is_escaped_or_sanitised(make_store, client_for, tmp_path):
    from prefkit.studio.tasks import import_pairs_file
    from tests.studio.conftest import write_jsonl

    for mode in ("markdown", "text"):
        store, _ = make_store(0, name=mode, render=mode)
        import_pairs_file(store, str(write_jsonl(tmp_path / f"{mode}.jsonl",
                                                 [{"prompt": XSS, "chosen": XSS + " one", "rejected": XSS + " two"}])))
        _, token = add_annotator(store, "alice")
        client = client_for(store)
        sign_in(client, token)
        html = client.get("/label").text
        tags = _tags(html)
        assert [a for t, a in tags if t == "script"] == [{"src": "/static/studio.js", "defer": None}]
        assert not [(t, k) for t, a in tags for k in a if k.startswith("on")]
        assert not [a for t, a in tags if t == "a" and (a.get("href") or "").strip().lower().startswith("javascript")]
        assert not [t for t, _ in tags if t == "img"]
        assert "&lt;script&gt;" in html  # shown as text


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    from html.parser import HTMLParser

    found: list[tuple[str, dict[str, str | None]]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

    Collect().feed(html)
    return found


def test_no_checkpoint_name_reaches_the_label_page(make_store, client_for):
    from prefkit.studio.tasks import TaskRow, store_rows

    store, _ = make_store(0)
    store_rows(store, [TaskRow("p", "one answer", "another answer", ("f", 1), "/ckpts/secret-model-a",
                               "/ckpts/secret-model-b")], origin="generated", source="f")
    _, token = add_annotator(store, "alice")
    client = client_for(store)
    sign_in(client, token)
    html = client.get("/label").text
    assert "one answer" in html and "secret-model" not in html
    assert "secret-model" not in str(client.get("/api/task").json())


def test_leaderboard_api_and_page_follow_the_votes(make_store, client_for):
    from prefkit.studio import queue
    from prefkit.studio.tasks import TaskRow, store_rows

    store, _ = make_store(0)
    rows = [TaskRow(f"p{i}", f"x{i} from strong", f"y{i} from weak", ("f", i + 1), "/m/strong", "/m/weak")
            for i in range(6)]
    store_rows(store, rows, origin="generated", source="f")
    voter, token = add_annotator(store, "alice")
    client = client_for(store)
    sign_in(client, token)
    assert client.get("/api/leaderboard").json() == {"battles": 0, "models": []}
    for i in range(6):
        task = queue.next_task(store, voter.id)
        side = "left" if task.left.endswith("strong") else "right"
        queue.vote(store, voter.id, task.assignment_id, side if i < 5 else "tie", nonce=f"board-{i:04d}")
    board = client.get("/api/leaderboard").json()
    assert [m["model"] for m in board["models"]] == ["strong", "weak"] and board["battles"] == 6
    assert board["win_rate"]["strong"]["weak"] == pytest.approx(5.5 / 6, abs=1e-3)
    queue.undo_last(store, voter.id)  # the leaderboard follows an undone vote
    assert client.get("/api/leaderboard").json()["battles"] == 5
    assert "strong" in client.get("/leaderboard").text


def test_leaderboard_page_shows_cycles_with_the_gpm_view(make_store, client_for):
    from prefkit.studio import queue
    from prefkit.studio.tasks import TaskRow, store_rows

    store, _ = make_store(0)
    beats = [("rock", "scissors"), ("scissors", "paper"), ("paper", "rock")]
    rows = [TaskRow(f"p{i}-{w}", f"answer {i} {w}", f"answer {i} {lo}", ("f", 10 * i + k), f"/m/{w}", f"/m/{lo}")
            for i in range(4) for k, (w, lo) in enumerate(beats)]
    store_rows(store, rows, origin="generated", source="f")
    voter, token = add_annotator(store, "alice")
    for i in range(len(rows)):
        task = queue.next_task(store, voter.id)
        winner = dict(beats)[task.prompt.split("-")[1]]  # the loser's name
        side = "right" if task.left.endswith(winner) else "left"
        queue.vote(store, voter.id, task.assignment_id, side, nonce=f"cycle-{i:04d}")
    client = client_for(store, n_boot=5)
    sign_in(client, token)
    page = client.get("/leaderboard").text
    assert 'id="cycles"' in page and 'id="gpm"' in page and "Nash mixture" in page
    board = client.get("/api/leaderboard").json()
    assert len(board["cycles"]) == 1 and set(board["gpm"]["nash"]) == {"rock", "paper", "scissors"}
