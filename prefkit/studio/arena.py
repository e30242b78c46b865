"""The arena: answers generated on the spot by two checkpoints drawn at random, identities hidden
until the vote (Chatbot Arena's anonymous battles; FastChat ``gradio_block_arena_anony.py``).

A battle draws two different checkpoints uniformly, one answer each to the voter's prompt (typed,
or drawn from a prompts file), and a coin flip for which is shown left; it is stored as a pair of
origin ``arena`` with one assignment for that voter, so the vote goes through the same path as
labelling (canonical verdict, committed before the reveal). The names appear only on the reveal
page, after the vote; the leaderboard (``prefkit.studio.ratings``) rates every labelled pair whose
two responses come from different checkpoints.
"""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prefkit.studio.errors import StudioError, TaskRefused
from prefkit.studio.security import MAX_ARENA_PROMPT_CHARS, MAX_RESPONSE_CHARS
from prefkit.studio.store import Store, utcnow
from prefkit.studio.tasks import checkpoint_id, content_hash


@dataclass(frozen=True)
class Reveal:
    left: str
    right: str
    chose: str


class Arena:
    """Loaded checkpoints and the prompts to draw from; ``battle`` makes one battle."""

    def __init__(self, store: Store, checkpoints: Sequence[str], *, prompts_file: str | None = None,
                 max_new_tokens: int = 48, temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None,
                 policies: dict[str, Any] | None = None) -> None:
        from prefkit.policy import Policy

        if len(checkpoints) < 2:
            raise StudioError(f"the arena needs at least two checkpoints, got {len(checkpoints)}", field="arena")
        if len(set(checkpoints)) != len(checkpoints):
            raise StudioError("the arena's checkpoints must be different", field="arena")
        if max_new_tokens <= 0:
            raise StudioError(f"max new tokens must be positive, got {max_new_tokens}", field="max_new_tokens")
        self.store = store
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.policies: dict[int, Any] = {}
        with store.write() as s:
            ids = [checkpoint_id(s, str(c)) for c in checkpoints]
        for cid, path in zip(ids, checkpoints):
            self.policies[cid] = (policies or {}).get(str(path)) or Policy.load(path, device="cpu")
        self.prompts: list[str] = []
        if prompts_file is not None:
            from prefkit.data import read_prompts

            records, _ = read_prompts(prompts_file)
            self.prompts = [r.prompt for r in records if isinstance(r.prompt, str)]
            if not self.prompts:
                raise StudioError("no plain-text prompt in the file", file=prompts_file)

    def draw_prompt(self) -> str:
        if not self.prompts:
            raise TaskRefused("no prompts file was given (--arena-prompts); type a prompt", field="prompt")
        with self.lock:
            return self.rng.choice(self.prompts)

    def _answer(self, checkpoint: int, prompt: str) -> str:
        import torch

        policy = self.policies[checkpoint]
        generator = torch.Generator().manual_seed(self.rng.randrange(2**62))
        keep = max(policy.max_length - self.max_new_tokens, 1)
        text = policy.sample([prompt], 1, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                             top_p=self.top_p, generator=generator, max_prompt_length=keep).texts[0][0]
        return text[:MAX_RESPONSE_CHARS]

    def battle(self, annotator_id: int, prompt: Any) -> int:
        """Generate a battle for ``prompt``; returns the voter's assignment id."""
        from prefkit.studio.schema import Assignment, Pair, Prompt, Response

        if not isinstance(prompt, str) or not prompt.strip():
            raise TaskRefused("type a prompt (or draw one)", field="prompt")
        prompt = prompt.strip()
        if len(prompt) > MAX_ARENA_PROMPT_CHARS:
            raise TaskRefused(f"the prompt is {len(prompt)} characters, over the limit of {MAX_ARENA_PROMPT_CHARS}",
                              field="prompt", status=413)
        with self.lock:  # one generation at a time: the models are shared and CPU-bound
            first, second = self.rng.sample(sorted(self.policies), 2)
            answers = {first: self._answer(first, prompt), second: self._answer(second, prompt)}
        params = {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p}
        import json

        with self.store.write() as s:
            from sqlalchemy import select

            digest = content_hash(prompt)
            prompt_id = s.scalar(select(Prompt.id).where(Prompt.project_id == self.store.project_id,
                                                         Prompt.content_hash == digest))
            if prompt_id is None:
                row = Prompt(project_id=self.store.project_id, text=prompt, content_hash=digest)
                s.add(row)
                s.flush()
                prompt_id = row.id
            responses = []
            for cid in (first, second):
                r = Response(prompt_id=prompt_id, checkpoint_id=cid, text=answers[cid],
                             content_hash=content_hash(answers[cid]), gen_params_json=json.dumps(params, sort_keys=True))
                s.add(r)
                s.flush()
                responses.append(r.id)
            low, high = sorted(responses)
            now = utcnow()
            pair = Pair(project_id=self.store.project_id, prompt_id=prompt_id, resp_a_id=low, resp_b_id=high,
                        origin="arena", source="arena", random_key=0.0, status="open", created_at=now)
            s.add(pair)
            s.flush()
            assignment = Assignment(pair_id=pair.id, annotator_id=annotator_id, left_is_a=bool(secrets.randbelow(2)),
                                    issued_at=now, expires_at=now + timedelta(days=1), status="issued")
            s.add(assignment)
            s.flush()
            return assignment.id


def reveal(store: Store, annotator_id: int, assignment_id: int) -> Reveal:
    """Who was left and right in one of the voter's arena battles: only once it has their vote."""
    from sqlalchemy import select

    from prefkit.studio.schema import Assignment, Checkpoint, Label, Pair, Response

    with store.read() as s:
        assignment = s.get(Assignment, assignment_id)
        if assignment is None or assignment.annotator_id != annotator_id:
            raise TaskRefused("no such battle for you", status=404)
        label = s.scalar(select(Label).where(Label.assignment_id == assignment.id))
        if label is None:
            raise TaskRefused("vote first: the models are shown after your vote", status=403)
        pair = s.get(Pair, assignment.pair_id)
        names = []
        for rid in (pair.resp_a_id, pair.resp_b_id):
            response = s.get(Response, rid)
            names.append(s.get(Checkpoint, response.checkpoint_id).name if response.checkpoint_id else "?")
        left, right = names if assignment.left_is_a else names[::-1]
        if label.verdict in ("a", "b"):
            chose = "left" if (label.verdict == "a") == bool(assignment.left_is_a) else "right"
        else:
            chose = label.verdict
        return Reveal(left, right, chose)
