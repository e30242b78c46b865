"""Task import: readers' errors, studio limits, duplicates, re-import, nothing half-written,
generation by policies, a simulated world."""

from __future__ import annotations

import json

import pytest

from prefkit.errors import InputError
from prefkit.studio.queue import progress
from prefkit.studio.security import MAX_RESPONSE_CHARS
from prefkit.studio.tasks import generate_tasks, import_pairs_file, seed_from_world
from tests.studio.conftest import pair_rows, write_jsonl


def test_import_pairs_and_canonical_order(make_store, tmp_path):
    from sqlalchemy import select

    from prefkit.studio.schema import Pair

    store, _ = make_store(0)
    summary = import_pairs_file(store, str(write_jsonl(tmp_path / "t.jsonl", pair_rows(4))))
    assert (summary.pairs, summary.prompts, summary.responses) == (4, 4, 8)
    with store.read() as s:
        pairs = s.scalars(select(Pair)).all()
    assert all(p.resp_a_id < p.resp_b_id and p.status == "open" for p in pairs)
    assert [p.source for p in pairs] == [f"{tmp_path / 't.jsonl'}:{i}" for i in range(1, 5)]


def test_malformed_task_file_names_file_and_line(make_store, tmp_path):
    store, _ = make_store(0)
    path = write_jsonl(tmp_path / "bad.jsonl", [pair_rows(1)[0], '{"prompt": "x", "chosen": ', {"prompt": "p"}])
    with pytest.raises(InputError) as err:
        import_pairs_file(store, str(path))
    assert f"{path}:2" in str(err.value) and "malformed JSON" in str(err.value)
    assert progress(store).pairs == 0


def test_response_over_the_size_limit_is_refused_and_nothing_written(make_store, tmp_path):
    store, _ = make_store(0)
    rows = pair_rows(3)
    rows[2]["rejected"] = "x" * (MAX_RESPONSE_CHARS + 1)
    path = write_jsonl(tmp_path / "big.jsonl", rows)
    with pytest.raises(InputError, match=rf"big.jsonl:3 \[rejected\]: is {MAX_RESPONSE_CHARS + 1} characters"):
        import_pairs_file(store, str(path))
    assert progress(store).pairs == 0  # rows 1-2 were valid but are not half-written


def test_duplicate_task_within_a_file(make_store, tmp_path):
    store, _ = make_store(0)
    rows = pair_rows(2)
    rows.append({"prompt": rows[0]["prompt"], "chosen": rows[0]["rejected"], "rejected": rows[0]["chosen"]})
    with pytest.raises(InputError, match=r"dup.jsonl:3: duplicate task: the same prompt and responses as line 1"):
        import_pairs_file(store, str(write_jsonl(tmp_path / "dup.jsonl", rows)))
    assert progress(store).pairs == 0


def test_reimport_of_the_same_file_adds_nothing_and_partial_overlap_is_refused(make_store, tmp_path):
    store, _ = make_store(0)
    path = write_jsonl(tmp_path / "t.jsonl", pair_rows(3))
    import_pairs_file(store, str(path))
    again = import_pairs_file(store, str(path))
    assert again.pairs == 0 and "already imported" in again.notes[0]
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [*pair_rows(1), *pair_rows(1, prefix="new")])
    with pytest.raises(InputError, match=r"mixed.jsonl:1: duplicate task: already in the project \(from .*t.jsonl:1\)"):
        import_pairs_file(store, str(mixed))
    assert progress(store).pairs == 3


def test_conversations_are_refused_with_the_field(make_store, tmp_path):
    store, _ = make_store(0)
    row = {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "a"}],
           "rejected": [{"role": "assistant", "content": "b"}]}
    with pytest.raises(InputError, match=r"conv.jsonl:1 \[prompt\]: studio tasks must be plain text"):
        import_pairs_file(store, str(write_jsonl(tmp_path / "conv.jsonl", [row])))


def test_labels_in_a_task_file_are_not_votes(make_store, tmp_path):
    from prefkit.studio.export import vote_rows

    store, _ = make_store(0)
    rows = [{**r, "label": 0.5} for r in pair_rows(2)]
    summary = import_pairs_file(store, str(write_jsonl(tmp_path / "l.jsonl", rows)))
    assert any("labels were not imported" in n for n in summary.notes)
    assert vote_rows(store) == []


def test_generated_tasks_from_two_policies_remember_their_checkpoints(make_store, tmp_path, tiny_checkpoints):
    from sqlalchemy import select

    from prefkit.studio.schema import Checkpoint, Response

    store, _ = make_store(0)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "tell me about the sea"},
                                                         {"prompt": "write a short poem"}])
    summary = generate_tasks(store, str(prompts), tiny_checkpoints, max_new_tokens=8, seed=0)
    assert summary.pairs + sum(summary.skipped.values()) == 2
    with store.read() as s:
        names = set(s.scalars(select(Checkpoint.name)))
        assert names == {"alpha", "beta"}
        assert all(r.checkpoint_id is not None and json.loads(r.gen_params_json)["max_new_tokens"] == 8
                   for r in s.scalars(select(Response)))


def test_generated_tasks_are_reproducible(make_store, tmp_path, tiny_checkpoints):
    from sqlalchemy import select

    from prefkit.studio.schema import Response

    texts = []
    for name in ("one", "two"):
        store, _ = make_store(0, name=name)
        prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "tell me about the sea"}])
        generate_tasks(store, str(prompts), tiny_checkpoints[:1], max_new_tokens=6, seed=3)
        with store.read() as s:
            texts.append(sorted(s.scalars(select(Response.text))))
    assert texts[0] == texts[1]


def test_policy_count_is_checked(make_store, tmp_path, tiny_checkpoints):
    store, _ = make_store(0)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "x"}])
    with pytest.raises(InputError, match="one or two checkpoints"):
        generate_tasks(store, str(prompts), tiny_checkpoints * 2)


def test_seed_from_world(make_store):
    store, _ = make_store(0)
    summary = seed_from_world(store, "transitive", n=30, seed=0)
    assert summary.pairs + summary.skipped.get("repeated draws", 0) == 30
    assert progress(store).pairs == summary.pairs
