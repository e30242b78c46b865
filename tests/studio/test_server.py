"""The real server process: the demo, kill -9 between votes loses nothing, graceful shutdown."""

from __future__ import annotations

import threading

import httpx

from prefkit.studio.annotators import add_annotator
from prefkit.studio.export import vote_rows
from prefkit.studio.store import open_project
from tests.studio.conftest import csrf_of, pair_rows, write_jsonl


def test_demo_project_serves_the_labelling_page_seeded_from_the_world(live_server, tmp_path):
    server = live_server("--project", "demo", cwd=str(tmp_path))
    facts = server.facts
    assert facts["created"] and facts["tasks"] > 150 and facts["url"].startswith("http://127.0.0.1:")
    with httpx.Client(base_url=server.url) as client:
        page = client.get("/login")
        client.post("/login", data={"token": facts["owner_token"], "csrf_token": csrf_of(page.text)})
        label = client.get("/label")
    assert label.status_code == 200 and 'id="vote-form"' in label.text
    from prefkit.sim import make_world

    world_prompts = set(make_world("transitive", seed=0).prompts("train"))
    prompt = label.text.split('<div id="prompt">', 1)[1].split("</div>", 2)[1]
    assert any(p in label.text for p in world_prompts), prompt


def _project_with_annotators(tmp_path, n_pairs, handles, **settings):
    store, _ = open_project(tmp_path / "p", create=True, settings=settings)
    from prefkit.studio.tasks import import_pairs_file

    import_pairs_file(store, str(write_jsonl(tmp_path / "t.jsonl", pair_rows(n_pairs))))
    tokens = {h: add_annotator(store, h)[1] for h in handles}
    store.close()
    return tmp_path / "p", tokens


def _vote(client, token, nonce):
    auth = {"authorization": f"Bearer {token}"}
    task = client.get("/api/task", headers=auth).json()["task"]
    if task is None:
        return None
    response = client.post("/api/vote", headers=auth, json={"assignment": task["assignment"], "choice": "left",
                                                            "nonce": nonce})
    assert response.status_code == 200, response.text
    return response.json()["vote"]


def test_kill_9_between_votes_loses_no_acknowledged_vote(live_server, tmp_path):
    project, tokens = _project_with_annotators(tmp_path, 12, ["alice", "bob"], overlap_k=2)
    acknowledged: list[int] = []
    lock = threading.Lock()
    for round_ in range(2):
        server = live_server("--project", str(project))
        with httpx.Client(base_url=server.url, timeout=30) as client:
            def annotate(handle, round_=round_, client=client):
                for i in range(4):
                    vote = _vote(client, tokens[handle], f"{handle}-{round_}-{i:03d}")
                    with lock:
                        acknowledged.append(vote)

            threads = [threading.Thread(target=annotate, args=(h,)) for h in tokens]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        server.kill()  # SIGKILL right after the last acknowledgement
        assert server.proc.returncode == -9
    store, _ = open_project(project)
    rows = vote_rows(store)
    store.close()
    assert sorted(r["vote_id"] for r in rows) == sorted(acknowledged) and len(acknowledged) == 16
    per_pair: dict[int, list[str]] = {}
    for r in rows:
        per_pair.setdefault(r["pair_id"], []).append(r["annotator"])
    assert all(len(v) == len(set(v)) <= 2 for v in per_pair.values())  # the overlap, nobody twice


def test_sigterm_shuts_down_gracefully(live_server, tmp_path):
    project, tokens = _project_with_annotators(tmp_path, 3, ["alice"])
    server = live_server("--project", str(project))
    with httpx.Client(base_url=server.url) as client:
        assert _vote(client, tokens["alice"], "term-0001") == 1
    assert server.terminate() == 0
    store, _ = open_project(project)
    assert len(vote_rows(store)) == 1
    store.close()
