"""``prefkit studio`` on the command line: bad input is one line and exit 2, nothing half-written."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from prefkit.cli.main import main
from tests.studio.conftest import pair_rows, write_jsonl


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


def test_port_in_use_is_one_line_and_writes_nothing(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = main(["studio", "--project", str(tmp_path / "p"), "--world", "transitive", "--port", str(port)])
    assert code == 2
    err = _error(capsys)
    assert err == f"prefkit studio: error: [port]: port {port} on 127.0.0.1 is already in use; pass --port with a " \
                  "free port (or stop the other server)"
    assert not (tmp_path / "p").exists()


def test_unreachable_database_is_one_line(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/no/such/dir/x.db"
    code = main(["studio", "--project", str(tmp_path / "p"), "--db", url, "--world", "transitive", "--port", "0"])
    assert code == 2
    assert "cannot reach database sqlite:///" in _error(capsys)
    assert not (tmp_path / "p").exists()


def test_malformed_task_file_is_one_line_and_the_new_project_is_removed(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [pair_rows(1)[0], '{"prompt": "p", "chosen": "a"}'])
    code = main(["studio", "--project", str(tmp_path / "p"), "--tasks", str(bad), "--port", "0"])
    assert code == 2
    err = _error(capsys)
    assert f"{bad}:2 [rejected]" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "p").exists()


def test_no_tasks_is_refused(tmp_path, capsys):
    assert main(["studio", "--project", str(tmp_path / "p"), "--port", "0"]) == 2
    assert "the project has no tasks" in _error(capsys)
    assert not (tmp_path / "p").exists()


def test_prompts_need_a_policy(tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "x"}])
    assert main(["studio", "--project", str(tmp_path / "p"), "--prompts", str(prompts), "--port", "0"]) == 2
    assert "needs --policy" in _error(capsys)


def test_import_annotator_and_export_commands(tmp_path, capsys):
    project = str(tmp_path / "p")
    tasks = write_jsonl(tmp_path / "t.jsonl", pair_rows(3))
    assert main(["studio", "import", "--project", project, "--tasks", str(tasks), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["imported"][0]["pairs"] == 3
    assert main(["studio", "annotator", "add", "--project", project, "--handle", "alice", "--json"]) == 0
    token = json.loads(capsys.readouterr().out)["token"]
    assert main(["studio", "annotator", "add", "--project", project, "--handle", "alice"]) == 2
    assert "already exists" in _error(capsys)
    assert main(["studio", "annotator", "add", "--project", project, "--handle", "Bad Name"]) == 2
    assert "handle 'Bad Name' must be" in _error(capsys)
    assert main(["studio", "annotator", "revoke", "--project", project, "--handle", "alice", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["active"] is False
    assert main(["studio", "annotator", "token", "--project", project, "--handle", "alice", "--json"]) == 0
    new_token = json.loads(capsys.readouterr().out)["token"]
    assert new_token != token
    from prefkit.studio.annotators import authenticate
    from prefkit.studio.store import open_project

    store, _ = open_project(project)
    assert authenticate(store, new_token).active
    from prefkit.studio import queue

    task = queue.next_task(store, authenticate(store, new_token).id)
    queue.vote(store, authenticate(store, new_token).id, task.assignment_id, "left", nonce="cli-nonce-1")
    store.close()
    out = tmp_path / "votes.jsonl"
    assert main(["studio", "export", "--project", project, "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 1
    assert json.loads(out.read_text())["annotator"] == "alice"
    assert main(["studio", "export", "--project", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "no studio project here" in _error(capsys)


def test_a_real_process_exits_2_without_a_traceback(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", ['{"prompt": "p", "chosen": "a", "rejected": ' + '"' + "x" * 30000 + '"}'])
    done = subprocess.run([sys.executable, "-m", "prefkit", "studio", "--project", str(tmp_path / "p"), "--tasks",
                           str(bad), "--port", "0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"prefkit studio: error: {bad}:1 [rejected]: is 30000 characters, over the studio's limit of 20000"]


def test_the_world_choices_are_the_registered_worlds():
    from prefkit.cli import studio as studio_cli
    from prefkit.sim import WORLDS

    assert set(studio_cli.WORLD_NAMES) == set(WORLDS)
