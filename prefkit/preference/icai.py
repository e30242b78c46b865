"""Inverse Constitutional AI: principles that explain a preference dataset (Findeis et al. 2024).

ICAI (arXiv 2406.06560; algorithms.md §16; official code ``rdnfn/icai``) compresses pairwise
feedback into a short *constitution*, a list of natural-language principles such that an
annotator prompted with it reconstructs the labels. The steps, with ICAI's defaults:

1. **propose** up to ``per_pair`` principles per pair (``s1_num_principles_per_sampling_step``
   = 3) that would explain why the chosen response won: :class:`RuleProposer` (no LLM: the
   rule principles of ``prefkit.preference.rules`` that favour the chosen response, plus one
   word marker) or :class:`LLMProposer` (any ``prefkit.llm`` backend);
2. **cluster** the distinct proposals: sentence embeddings (all-MiniLM-L6-v2 by default,
   ``prefkit.preference.encoder``) and scikit-learn's KMeans with ``clusters`` clusters
   (ICAI: 3, synthetic configs 40); one principle per cluster is kept (``per_cluster``) — the
   most frequently proposed (ICAI samples one at random; the most frequent is deterministic and
   the more representative, a documented deviation);
3. **vote**: every kept principle is tested on every pair, *for* (it prefers the chosen
   response), *against*, *abstain* (not relevant) or *invalid* (an unusable LLM answer,
   counted, never read as a vote): :class:`RuleVoter` or :class:`LLMVoter` (ICAI's
   one-prompt-per-pair voting over up to 40 principles, positions randomised);
4. **filter and rank** as ICAI does: keep a principle when ``for > against``, its valid votes
   outnumber its invalid ones and ``for >= min_relevance * pairs`` (``s3_filter_min_relevance``
   = 0.1); rank by ``for - against``; keep the top ``max_principles`` (synthetic configs: 5).

Each principle reports ``support = (for - against) / (for + against)`` (net agreement with the
labels on the pairs it decides) and ``relevance = (for + against) / pairs``. The
**reconstruction accuracy** is the agreement with the labels of an annotator prompted with the
constitution, against the same annotator without it: with rules, the majority vote of the
constitution's principles (abstaining ties count 1/2) against chance (1/2); with an LLM, an
:class:`~prefkit.preference.llm_judge.LLMJudge` whose prompt lists the principles against the
plain judge (both position-debiased).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prefkit.data.records import PairRecord
from prefkit.llm.base import ChatRequest
from prefkit.preference.llm_judge import DEFAULT_TEMPLATE, LLMJudge, as_text
from prefkit.preference.rules import RulePrinciple, catalogue, word_principle, words

VOTES = ("for", "against", "abstain", "invalid")


@dataclass(frozen=True)
class Principle:
    """A candidate principle: its text and, for rule principles, the rule that votes for it."""

    text: str
    rule: RulePrinciple | None = field(default=None, compare=False)


class NoPrinciplesError(ValueError):
    """The proposer returned no principle for any pair; nothing is written."""


# -- proposing ------------------------------------------------------------------------------------


class RuleProposer:
    """Rule principles that favour the chosen response of a pair, at most ``per_pair`` (drawn at
    random when more apply), of which up to ``words_per_pair`` word markers ("uses/avoids the word
    W"; off by default: hundreds of distinct word markers crowd the clustering, so that opposite
    catalogue principles such as "longer" and "shorter", whose embeddings are close, share a
    cluster and only one of them is tested — benchmarks/RESULTS.md measures it)."""

    name = "rules"

    def __init__(self, *, per_pair: int = 3, words_per_pair: int = 0, seed: int = 0) -> None:
        if per_pair < 1 or words_per_pair < 0:
            raise ValueError("per_pair must be >= 1 and words_per_pair >= 0")
        self.per_pair, self.words_per_pair = per_pair, words_per_pair
        self.rng = np.random.default_rng(seed)
        self.rules = catalogue()

    def propose(self, pairs: Sequence[PairRecord]) -> list[list[Principle]]:
        out = []
        for pair in pairs:
            found = [Principle(r.text, r) for r in self.rules if r.vote(pair.prompt, pair.chosen, pair.rejected) > 0]
            chosen_words, rejected_words = set(words(as_text(pair.chosen))), set(words(as_text(pair.rejected)))
            markers = [word_principle(w) for w in sorted(chosen_words - rejected_words)]
            markers += [word_principle(w, uses=False) for w in sorted(rejected_words - chosen_words)]
            if markers and self.words_per_pair:
                picks = self.rng.choice(len(markers), size=min(self.words_per_pair, len(markers)), replace=False)
                found += [Principle(markers[i].text, markers[i]) for i in sorted(picks)]
            if len(found) > self.per_pair:
                found = [found[i] for i in sorted(self.rng.choice(len(found), size=self.per_pair, replace=False))]
            out.append(found)
        return out


PROPOSE_PROMPT = (
    "A person compared two responses to the same instruction and preferred one of them.\n\n"
    "Instruction: {prompt}\n\nPreferred response: {chosen}\n\nRejected response: {rejected}\n\n"
    "Write up to {n} general principles that would explain this preference. Each principle must be one "
    "sentence starting with \"Select the response that\". Answer with a JSON list of strings only."
)


def parse_principles(text: str, limit: int) -> list[str]:
    """Principles from an LLM answer: a JSON list of strings, else lines starting with
    "Select the response" (bullets and numbering removed); at most ``limit``."""
    found: list[str] = []
    match = re.search(r"\[.*\]", text, flags=re.S)
    if match:
        try:
            value = json.loads(match.group(0))
            if isinstance(value, list):
                found = [v.strip() for v in value if isinstance(v, str) and v.strip()]
        except ValueError:
            found = []
    if not found:
        for line in text.splitlines():
            line = re.sub(r"^\s*([-*•]|\d+[.)])\s*", "", line).strip().strip('"')
            if line.lower().startswith("select the response"):
                found.append(line)
    return found[:limit]


class LLMProposer:
    """Principles written by an LLM for each pair (one request per pair, cached by the backend)."""

    name = "llm"

    def __init__(self, backend: Any, *, per_pair: int = 3, template: str = PROPOSE_PROMPT, temperature: float = 0.0,
                 max_tokens: int = 256, seed: int = 0) -> None:
        self.backend, self.per_pair, self.template = backend, per_pair, template
        self.temperature, self.max_tokens, self.seed = temperature, max_tokens, seed
        self.unparsed = 0

    def propose(self, pairs: Sequence[PairRecord]) -> list[list[Principle]]:
        requests = [ChatRequest(messages=({"role": "user", "content": self.template.format(
            prompt=as_text(p.prompt), chosen=as_text(p.chosen), rejected=as_text(p.rejected), n=self.per_pair)},),
            temperature=self.temperature, max_tokens=self.max_tokens, seed=self.seed) for p in pairs]
        out = []
        for result in self.backend.chat(requests):
            texts = parse_principles(result.texts[0], self.per_pair)
            self.unparsed += not texts
            out.append([Principle(t) for t in texts])
        return out


# -- clustering -----------------------------------------------------------------------------------


def cluster_principles(proposals: Sequence[Sequence[Principle]], *, clusters: int, embed: Callable[[list[str]], np.ndarray],
                       seed: int = 0, per_cluster: int = 1) -> tuple[list[Principle], dict[str, Any]]:
    """``per_cluster`` principles per KMeans cluster of the distinct proposals (the most frequently
    proposed; ties broken by closeness to the centroid; ICAI keeps one). Returns the principles
    and a summary."""
    from sklearn.cluster import KMeans

    counts: Counter[str] = Counter(p.text for row in proposals for p in row)
    by_text: dict[str, Principle] = {}
    for row in proposals:
        for p in row:
            by_text.setdefault(p.text, p)
    texts = sorted(counts, key=lambda t: (-counts[t], t))
    if not texts:
        raise NoPrinciplesError("no principles to cluster")
    k = min(clusters, len(texts))
    vectors = np.asarray(embed(texts), dtype=np.float64)
    if k == len(texts):
        labels = np.arange(len(texts))
        centers = vectors
    else:
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(vectors)
        labels, centers = km.labels_, km.cluster_centers_
    kept, members = [], []
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        distance = np.linalg.norm(vectors[idx] - centers[c], axis=1)
        where = {int(i): k for k, i in enumerate(idx)}
        ordered = sorted(idx, key=lambda i: (-counts[texts[i]], float(distance[where[int(i)]]), texts[i]))
        kept += [by_text[texts[i]] for i in ordered[:per_cluster]]
        members.append(len(idx))
    return kept, {"distinct_proposals": len(texts), "proposals": int(sum(counts.values())), "clusters": k,
                  "per_cluster": per_cluster, "cluster_sizes": members}


# -- voting ---------------------------------------------------------------------------------------


class RuleVoter:
    """Votes with each principle's rule (every principle must come from ``prefkit.preference.rules``)."""

    name = "rules"

    def votes(self, principles: Sequence[Principle], pairs: Sequence[PairRecord]) -> np.ndarray:
        """``[P, N]`` votes: +1 for (prefers chosen), -1 against, 0 abstain (no invalid votes)."""
        missing = [p.text for p in principles if p.rule is None]
        if missing:
            raise ValueError(f"the rule voter can only test rule principles; {missing[0]!r} has no rule "
                             "(vote with an LLM: --voter llm)")
        return np.array([[p.rule.vote(r.prompt, r.chosen, r.rejected) for r in pairs] for p in principles],
                        dtype=np.int64).reshape(len(principles), len(pairs))


VOTE_PROMPT = (
    "Two responses to the same instruction are shown. For each principle below, say which response it "
    "prefers: \"A\", \"B\", or \"None\" if it does not apply or both are equal.\n\n"
    "Instruction: {prompt}\n\nResponse A: {first}\n\nResponse B: {second}\n\nPrinciples:\n{principles}\n\n"
    "Answer with a JSON object mapping each principle number to \"A\", \"B\" or \"None\", e.g. "
    "{{\"1\": \"A\", \"2\": \"None\"}}."
)
INVALID = 2
"""The code of an invalid vote in a vote matrix (for +1, against -1, abstain 0)."""


class LLMVoter:
    """ICAI's voting: one request per pair listing up to ``chunk`` principles; the chosen response
    is shown first or second at random (seeded); an answer that is not a JSON object, or a value
    other than A/B/None, makes that principle's vote invalid (counted, never used)."""

    name = "llm"

    def __init__(self, backend: Any, *, chunk: int = 40, template: str = VOTE_PROMPT, max_tokens: int = 512,
                 seed: int = 0) -> None:
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        self.backend, self.chunk, self.template, self.max_tokens = backend, chunk, template, max_tokens
        self.seed = seed

    def votes(self, principles: Sequence[Principle], pairs: Sequence[PairRecord]) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        swapped = rng.random(len(pairs)) < 0.5
        out = np.full((len(principles), len(pairs)), INVALID, dtype=np.int64)
        for start in range(0, len(principles), self.chunk):
            chunk = principles[start:start + self.chunk]
            listing = "\n".join(f"{i + 1}. {p.text}" for i, p in enumerate(chunk))
            requests = []
            for pair, swap in zip(pairs, swapped):
                first, second = (pair.rejected, pair.chosen) if swap else (pair.chosen, pair.rejected)
                content = self.template.format(prompt=as_text(pair.prompt), first=as_text(first),
                                               second=as_text(second), principles=listing)
                requests.append(ChatRequest(messages=({"role": "user", "content": content},), temperature=0.0,
                                            max_tokens=self.max_tokens, seed=self.seed))
            for j, (result, swap) in enumerate(zip(self.backend.chat(requests), swapped)):
                answers = parse_votes(result.texts[0], len(chunk))
                for i, answer in enumerate(answers):
                    if answer is None:
                        continue
                    vote = {"A": 1, "B": -1, "NONE": 0}[answer]
                    out[start + i, j] = -vote if swap else vote
        return out


def parse_votes(text: str, count: int) -> list[str | None]:
    """``["A" | "B" | "NONE" | None] * count`` from a JSON object answer (``None``: invalid)."""
    out: list[str | None] = [None] * count
    match = re.search(r"\{.*\}", text, flags=re.S)
    if not match:
        return out
    try:
        value = json.loads(match.group(0))
    except ValueError:
        return out
    if not isinstance(value, dict):
        return out
    for key, answer in value.items():
        try:
            index = int(str(key).strip()) - 1
        except ValueError:
            continue
        if 0 <= index < count and isinstance(answer, str) and answer.strip().upper() in ("A", "B", "NONE"):
            out[index] = answer.strip().upper()
    return out


# -- filtering, ranking and reconstruction --------------------------------------------------------


@dataclass
class ScoredPrinciple:
    text: str
    votes: dict[str, int]
    pairs: int
    kept: bool = False
    rank: int | None = None
    reason: str = ""

    @property
    def support(self) -> float | None:
        decided = self.votes["for"] + self.votes["against"]
        return (self.votes["for"] - self.votes["against"]) / decided if decided else None

    @property
    def relevance(self) -> float:
        return (self.votes["for"] + self.votes["against"]) / self.pairs if self.pairs else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "rank": self.rank, "kept": self.kept, **self.votes,
                "support": self.support, "relevance": self.relevance, "net": self.votes["for"] - self.votes["against"],
                "reason": self.reason}


def tally(principles: Sequence[Principle], votes: np.ndarray) -> list[ScoredPrinciple]:
    out = []
    for p, row in zip(principles, votes):
        counts = {"for": int((row == 1).sum()), "against": int((row == -1).sum()),
                  "abstain": int((row == 0).sum()), "invalid": int((row == INVALID).sum())}
        out.append(ScoredPrinciple(p.text, counts, len(row)))
    return out


def filter_and_rank(scored: list[ScoredPrinciple], *, min_relevance: float = 0.1,
                    max_principles: int = 5) -> list[ScoredPrinciple]:
    """ICAI's filter (see the module doc); returns the kept principles, best first, and marks every
    principle with ``kept``/``rank``/``reason``."""
    survivors = []
    for s in scored:
        v = s.votes
        if v["for"] <= v["against"]:
            s.reason = "not more votes for than against"
        elif v["invalid"] >= v["for"] + v["against"]:
            s.reason = "more invalid votes than valid ones"
        elif v["for"] < min_relevance * s.pairs:
            s.reason = f"votes for below {min_relevance:g} of the pairs"
        else:
            survivors.append(s)
    survivors.sort(key=lambda s: (-(s.votes["for"] - s.votes["against"]), s.text))
    for i, s in enumerate(survivors):
        if i < max_principles:
            s.kept, s.rank = True, i + 1
        else:
            s.reason = f"ranked below the top {max_principles}"
    return [s for s in survivors if s.kept]


def majority_accuracy(votes: np.ndarray) -> float:
    """Agreement with the labels of the majority vote of rows of ``votes`` (``[P, N]``, +1 = for
    the chosen response); invalid votes are ignored and ties count 1/2."""
    valid = np.where(votes == INVALID, 0, votes)
    total = valid.sum(axis=0)
    return float(np.mean(np.where(total > 0, 1.0, np.where(total < 0, 0.0, 0.5)))) if votes.shape[1] else float("nan")


def constitution_template(principles: Sequence[str], base: str = DEFAULT_TEMPLATE) -> str:
    """A judge template that lists the principles before the question (braces escaped)."""
    listing = "\n".join(f"{i + 1}. {p}" for i, p in enumerate(principles)).replace("{", "{{").replace("}", "}}")
    return f"Judge by these principles:\n{listing}\n\n{base}"


def judge_accuracy(judge: Any, pairs: Sequence[PairRecord]) -> float:
    p = judge.prob([r.prompt for r in pairs], [r.chosen for r in pairs], [r.rejected for r in pairs])
    p = np.asarray(p, dtype=float)
    return float(np.mean(np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5))))


@dataclass
class Constitution:
    """The result: the kept principles (best first), every tested principle, and the numbers."""

    principles: list[ScoredPrinciple]
    tested: list[ScoredPrinciple]
    summary: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"constitution": [p.to_json() for p in self.principles], "tested": [p.to_json() for p in self.tested],
                **self.summary}


def orient(pairs: Sequence[PairRecord]) -> list[PairRecord]:
    """Decided pairs with the preferred response as ``chosen`` (a label below 1/2 swaps them;
    ties are left out)."""
    return [p if p.label > 0.5 else PairRecord(p.prompt, p.rejected, p.chosen, 1 - p.label, p.margin, p.weight,
                                               p.annotator, p.source) for p in pairs if p.label != 0.5]


def extract(pairs: Sequence[PairRecord], *, proposer: Any, voter: Any, embed: Callable[[list[str]], np.ndarray],
            clusters: int = 40, per_cluster: int = 1, max_principles: int = 5, min_relevance: float = 0.1,
            seed: int = 0, judge: LLMJudge | None = None,
            test_pairs: Sequence[PairRecord] | None = None) -> Constitution:
    """Run ICAI on ``pairs`` (see the module doc). ``judge``: an LLM judge for the reconstruction
    accuracy (prompted with and without the constitution); without it, the rule reconstruction.
    ``test_pairs``: held-out pairs on which the constitution is also measured."""
    oriented = orient(pairs)
    if not oriented:
        raise ValueError("no decided pairs (every pair is a tie); principles explain preferences")
    if clusters < 1 or per_cluster < 1 or max_principles < 1 or not 0.0 <= min_relevance <= 1.0:
        raise ValueError("need clusters >= 1, per_cluster >= 1, max_principles >= 1 and min_relevance in [0, 1]")
    proposals = proposer.propose(oriented)
    proposed = sum(len(row) for row in proposals)
    if not proposed:
        raise NoPrinciplesError(
            f"the {proposer.name} proposer returned no principle for any of the {len(oriented)} pairs"
            + (f" ({proposer.unparsed} answers could not be parsed as principles)" if getattr(proposer, "unparsed", 0)
               else "") + "; nothing written (check the proposer's answers; with the request cache a rerun is cheap)")
    candidates, clustering = cluster_principles(proposals, clusters=clusters, embed=embed, seed=seed,
                                                per_cluster=per_cluster)
    votes = voter.votes(candidates, oriented)
    scored = tally(candidates, votes)
    kept = filter_and_rank(scored, min_relevance=min_relevance, max_principles=max_principles)
    order = {s.text: i for i, s in enumerate(scored)}
    kept_votes = votes[[order[s.text] for s in kept]] if kept else np.zeros((0, len(oriented)), dtype=np.int64)
    summary: dict[str, Any] = {
        "pairs": len(oriented), "proposer": proposer.name, "voter": voter.name, **clustering,
        "pairs_without_proposal": sum(not row for row in proposals), "tested_principles": len(candidates),
        "invalid_votes": int((votes == INVALID).sum()), "kept_principles": len(kept),
    }
    kept_principles = [candidates[order[s.text]] for s in kept]
    test = orient(test_pairs or [])
    if judge is None:
        summary["reconstruction"] = {"with_constitution": majority_accuracy(kept_votes) if kept else 0.5,
                                     "without_constitution": 0.5,
                                     "annotator": f"majority vote of the constitution's principles ({voter.name} "
                                                  "voter) vs chance"}
        if test:
            summary["reconstruction"]["test_with_constitution"] = (
                majority_accuracy(voter.votes(kept_principles, test)) if kept else 0.5)
    else:
        with_judge = LLMJudge(judge.backend, template=constitution_template([k.text for k in kept], judge.template),
                              labels=judge.labels, name=f"{judge.name} + constitution")
        summary["reconstruction"] = {"with_constitution": judge_accuracy(with_judge, oriented),
                                     "without_constitution": judge_accuracy(judge, oriented),
                                     "annotator": judge.name}
        if test:
            summary["reconstruction"]["test_with_constitution"] = judge_accuracy(with_judge, test)
            summary["reconstruction"]["test_without_constitution"] = judge_accuracy(judge, test)
    return Constitution(kept, scored, summary)
