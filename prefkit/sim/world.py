"""A simulated world with a known ground-truth preference P*(a > b | x).

The world (docs/worlds.md has the full story and the numbers):

- **Prompts** ``TEMPLATE SUBJECT [MODIFIER]`` ask about one of eight topics; the modifier sets
  the preferred body length (``briefly`` 4 words, none 7, ``thoroughly`` 10). 480 prompts, split
  once per seed into disjoint train and eval sets.
- **Base generator** (what the SFT reference learns): an optional opener word (its style), then
  a body of i.i.d. words from five classes (on-topic, quality, filler, off-topic, bad) with a
  uniform length; a simple process, so :meth:`World.base_logprob` is exact.
- **Utility** (the transitive part), defined for *any* string::

      u(x, y) = a * content(x, y) - gamma * min(|len(y) - L*(x)|, cap) + bonus(topic(x), style(y))
      content = (sum of word values, a repeated word worth min(v, 0) - rho) / len(y)

  with word values on-topic 1, quality 0.5, filler 0, off-topic -0.4, bad -2, anything else -1
  (unknown words, prompt words, openers inside the body); ``len`` counts body words (after the
  opener). A response with an empty body gets a utility below every non-empty one.
- **True preference**: ``P*(a > b | x) = sigmoid(u(x, a) - u(x, b) + c * S[style(a), style(b)])``
  where ``S`` is the skew-symmetric 3-cycle formal > casual > playful > formal (zero for a
  response without style). ``c = 0`` gives a Bradley-Terry world; a large ``c`` makes the cycle
  dominate among good responses, so no style is best and the style-level Nash equilibrium is
  mixed (:meth:`World.style_nash`).
- **Annotators**: a pool of noisy, biased views of P* (``prefkit.sim.annotators``).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
from scipy.optimize import linprog
from scipy.special import expit

from prefkit.data.records import ListRecord, PairRecord
from prefkit.sim import generator, text
from prefkit.sim import lexicon as lx
from prefkit.sim.annotators import Annotator, resolve_pool
from prefkit.sim.generator import GeneratorConfig

Split = Literal["train", "eval"]

_N_TOPICS = len(lx.TOPICS)
_N_STYLE_SLOTS = len(lx.STYLES) + 1  # the styles plus "no style"

CYCLE = np.zeros((_N_STYLE_SLOTS, _N_STYLE_SLOTS))
"""Skew-symmetric style matrix S: ``S[i, j] = +1`` when style i beats style j in the cycle
formal > casual > playful > formal; the last row/column (no style) is zero."""
for _i in range(len(lx.STYLES)):
    CYCLE[_i, (_i + 1) % len(lx.STYLES)] = 1.0
    CYCLE[(_i + 1) % len(lx.STYLES), _i] = -1.0


@dataclass(frozen=True)
class WorldConfig:
    """Everything that defines a world; ``make_world(name, **overrides)`` replaces fields."""

    cyclic_strength: float = 0.0
    """``c``: weight of the skew-symmetric style cycle in the preference logit."""
    annotators: str | tuple[Annotator, ...] = "alpacafarm"
    """Annotator pool: ``clean``, ``alpacafarm``, ``length_biased`` or a tuple of Annotator."""
    content_scale: float = 5.0
    """``a``: logits per unit of mean word value."""
    class_values: tuple[float, ...] = (1.0, 0.5, 0.0, -0.4, -2.0, -1.0)
    """Value of a word of each class (order of ``lexicon.CLASS_NAMES``)."""
    repeat_penalty: float = 1.0
    """``rho``: a repeated word is worth ``min(v, 0) - rho`` instead of ``v``."""
    length_penalty: float = 0.3
    """``gamma``: logits lost per body word away from the prompt's preferred length."""
    length_penalty_cap: int = 8
    style_bonus: float = 0.5
    """Scale of the per-topic style bonus (bonus in ``[0.5, 1.5] * style_bonus``; none: 0)."""
    eval_fraction: float = 0.25
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)

    def __post_init__(self) -> None:
        if len(self.class_values) != len(lx.CLASS_NAMES):
            raise ValueError(f"class_values needs {len(lx.CLASS_NAMES)} values ({lx.CLASS_NAMES})")
        for name in ("content_scale", "repeat_penalty", "length_penalty", "style_bonus"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.length_penalty_cap < 0:
            raise ValueError("length_penalty_cap must be >= 0")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in (0, 1), got {self.eval_fraction}")
        resolve_pool(self.annotators)

    def replace(self, **overrides: Any) -> WorldConfig:
        """A copy with fields replaced; an unknown field is a ``ValueError`` with a suggestion."""
        names = [f.name for f in fields(self)]
        for key in overrides:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown world setting {key!r}{hint}; settings: {', '.join(names)}")
        if isinstance(overrides.get("annotators"), list):
            overrides["annotators"] = tuple(overrides["annotators"])
        return replace(self, **overrides)


@dataclass(frozen=True)
class Annotations:
    """Labels from the annotator pool, with what produced each one."""

    labels: np.ndarray
    """1.0 where ``a`` was preferred, 0.0 where ``b`` was."""
    annotator: np.ndarray
    """Index into ``world.pool`` of the annotator who wrote each label."""
    flipped: np.ndarray
    """True where the label was flipped after being drawn."""
    prob: np.ndarray
    """The annotator's own ``P_k(a > b | x)`` before the flip."""


@dataclass(frozen=True)
class _Features:
    """What the utility needs of each (prompt, response): class counts, length, style, prompt."""

    first: np.ndarray
    repeats: np.ndarray
    length: np.ndarray
    style: np.ndarray
    topics: np.ndarray
    preferred: np.ndarray


class World:
    """A simulated world: prompts, a base generator, P*, annotators (see the module docstring)."""

    def __init__(self, name: str = "custom", config: WorldConfig | None = None, seed: int = 0) -> None:
        self.name = name
        self.config = config or WorldConfig()
        self.seed = int(seed)
        self.pool: tuple[Annotator, ...] = resolve_pool(self.config.annotators)
        self._prompt_cache: dict[str, tuple[int, int]] = {}
        self._ideal_cache: dict[tuple[str, str | None], str] = {}
        # The phase pi/8 keeps the three bonuses of every topic distinct (no ties).
        angle = 2 * np.pi * (np.arange(_N_TOPICS)[:, None] / _N_TOPICS
                             + np.arange(len(lx.STYLES))[None, :] / len(lx.STYLES)) + np.pi / 8
        bonus = self.config.style_bonus * (1.0 + 0.5 * np.cos(angle))
        self.style_bonus_table = np.concatenate([bonus, np.zeros((_N_TOPICS, 1))], axis=1)
        """``[topic, style]`` utility bonus of opening in a style (last column: no style)."""
        all_prompts = [
            f"{template.format(subject)} {modifier}".strip()
            for topic in lx.TOPICS
            for subject in topic.subjects
            for template in lx.TEMPLATES
            for modifier in lx.MODIFIERS
        ]
        order = np.random.default_rng(self.seed).permutation(len(all_prompts))
        n_eval = round(self.config.eval_fraction * len(all_prompts))
        self._splits: dict[str, list[str]] = {  # each in a fixed, seeded, topic-mixed order
            "eval": [all_prompts[i] for i in order[:n_eval]],
            "train": [all_prompts[i] for i in order[n_eval:]],
        }

    # -- prompts --------------------------------------------------------------------------------

    def prompts(self, split: Split = "train", n: int | None = None,
                rng: np.random.Generator | None = None) -> list[str]:
        """Prompts of a split (train and eval are disjoint).

        ``n=None``: the whole split in its fixed order. ``n`` without ``rng``: the first ``n``
        (repeating the split in order when ``n`` exceeds it). With ``rng``: ``n`` drawn
        uniformly with replacement.
        """
        if split not in self._splits:
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
        pool = self._splits[split]
        if n is None:
            return list(pool)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if rng is not None:
            return [pool[i] for i in rng.integers(0, len(pool), size=n)]
        return [pool[i % len(pool)] for i in range(n)]

    def prompt_info(self, prompt: str) -> tuple[int, int]:
        """``(topic index or -1, preferred body length)`` of any prompt string."""
        if not isinstance(prompt, str):
            raise ValueError(f"a prompt must be a string, got {type(prompt).__name__}")
        info = self._prompt_cache.get(prompt)
        if info is None:
            words = prompt.split()
            topic = next((text.SUBJECT_TOPIC[w] for w in words if w in text.SUBJECT_TOPIC), -1)
            length = lx.MODIFIERS[""]
            for w in words:
                if w and w in lx.MODIFIERS:
                    length = lx.MODIFIERS[w]
            info = (topic, length)
            self._prompt_cache[prompt] = info
        return info

    def _prompt_arrays(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(topics, preferred lengths)`` as arrays; each distinct prompt is read once."""
        prompts = text.as_strings(prompts, "prompts")
        position = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
        info = np.array([self.prompt_info(p) for p in position], dtype=np.int64).reshape(-1, 2)
        index = np.fromiter(map(position.__getitem__, prompts), dtype=np.int64, count=len(prompts))
        return info[index, 0], info[index, 1]

    # -- base generator -------------------------------------------------------------------------

    def base_responses(self, prompts: Sequence[str], n: int, rng: np.random.Generator, *,
                       style: str | None = None) -> list[list[str]]:
        """``n`` base-generator responses per prompt (see ``GeneratorConfig``).

        ``style`` forces the opener: one of ``lexicon.STYLES``, or ``"none"`` for no opener.
        """
        topics, _ = self._prompt_arrays(prompts)
        if (topics < 0).any():
            bad = prompts[int(np.argmax(topics < 0))]
            raise ValueError(f"the base generator needs a prompt about a topic; got {bad!r}")
        if style is not None and style != "none" and style not in lx.STYLES:
            raise ValueError(f"style must be one of {lx.STYLES} or 'none', got {style!r}")
        out = generator.sample(self.config.generator, np.repeat(topics, n), rng, style)
        return [out[i * n:(i + 1) * n] for i in range(len(prompts))]

    def base_logprob(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Exact ``log p_base(y | x)`` of the base generator (``-inf`` where it cannot write y)."""
        prompts, responses = self._check_pair_lengths(prompts, responses)
        topics, _ = self._prompt_arrays(prompts)
        if (topics < 0).any():
            raise ValueError("base_logprob needs prompts about a topic (the generator's domain)")
        return generator.logprob(self.config.generator, text.parse(responses), topics)

    # -- the true preference --------------------------------------------------------------------

    def _features(self, prompts: Sequence[str], responses: Sequence[str]) -> _Features:
        topics, preferred = self._prompt_arrays(prompts)
        parsed = text.parse(responses)
        first, repeats = text.class_counts(parsed, topics)
        return _Features(first=first, repeats=repeats, length=parsed.length, style=parsed.style,
                         topics=topics, preferred=preferred)

    def _utility(self, f: _Features, annotator: Annotator | None = None) -> np.ndarray:
        """``u(x, y)`` from features; an annotator reweighs the word classes."""
        cfg = self.config
        values = np.asarray(cfg.class_values, dtype=float)
        if annotator is not None:
            values = values * np.asarray(annotator.class_weights, dtype=float)
        repeat_values = np.minimum(values, 0.0) - cfg.repeat_penalty
        content = (f.first @ values + f.repeats @ repeat_values) / np.maximum(f.length, 1)
        off_length = np.minimum(np.abs(f.length - f.preferred), cfg.length_penalty_cap)
        bonus = np.where(f.topics >= 0, self.style_bonus_table[np.maximum(f.topics, 0), f.style], 0.0)
        utility = cfg.content_scale * content - cfg.length_penalty * off_length + bonus
        utility[f.length == 0] = self._empty_utility(values)
        return utility

    def _empty_utility(self, values: np.ndarray) -> float:
        """Strictly below the utility of any non-empty response, even after the style cycle."""
        cfg = self.config
        worst_word = max(float(np.max(np.abs(values))) + cfg.repeat_penalty, 0.0)
        worst = cfg.content_scale * worst_word + cfg.length_penalty * cfg.length_penalty_cap
        return -(worst + float(self.style_bonus_table.max()) + 2 * abs(cfg.cyclic_strength) + 1.0)

    def utility(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """The transitive part ``u(x, y)`` of the true preference, for any strings."""
        prompts, responses = self._check_pair_lengths(prompts, responses)
        return self._utility(self._features(prompts, responses))

    def styles(self, responses: Sequence[str]) -> np.ndarray:
        """Style index of each response (``lexicon.NO_STYLE`` for no opener or an empty body)."""
        return text.parse(responses).style

    def _logit(self, u_a: np.ndarray, style_a: np.ndarray, u_b: np.ndarray, style_b: np.ndarray) -> np.ndarray:
        """``u(a) - u(b) + c * S[style(a), style(b)]``, the logit of P* (broadcasts)."""
        return u_a - u_b + self.config.cyclic_strength * CYCLE[style_a, style_b]

    def true_preference(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """``P*(a_i > b_i | x_i)`` for three lists of equal length."""
        prompts, a = self._check_pair_lengths(prompts, a)
        _, b = self._check_pair_lengths(prompts, b)
        fa, fb = self._features(prompts, a), self._features(prompts, b)
        return expit(self._logit(self._utility(fa), fa.style, self._utility(fb), fb.style))

    def preference_matrix(self, prompt: str, responses: Sequence[str],
                          others: Sequence[str] | None = None) -> np.ndarray:
        """``M[i, j] = P*(responses[i] > others[j] | prompt)`` (``others`` defaults to responses)."""
        responses = text.as_strings(responses, "responses")
        others = responses if others is None else text.as_strings(others, "others")
        fa = self._features([prompt] * len(responses), responses)
        fb = fa if others is responses else self._features([prompt] * len(others), others)
        u_a, u_b = self._utility(fa), self._utility(fb)
        return expit(self._logit(u_a[:, None], fa.style[:, None], u_b[None, :], fb.style[None, :]))

    # -- annotators -----------------------------------------------------------------------------

    def annotate_detailed(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str],
                          rng: np.random.Generator) -> Annotations:
        """Labels from the pool: each pair goes to one annotator drawn by ``weight``."""
        prompts, a = self._check_pair_lengths(prompts, a)
        _, b = self._check_pair_lengths(prompts, b)
        n = len(prompts)
        weights = np.array([ann.weight for ann in self.pool], dtype=float)
        who = rng.choice(len(self.pool), size=n, p=weights / weights.sum())
        fa, fb = self._features(prompts, a), self._features(prompts, b)
        prob = np.empty(n)
        for k, ann in enumerate(self.pool):
            mask = who == k
            logit = (ann.sharpness * self._logit(self._utility(fa, ann), fa.style, self._utility(fb, ann), fb.style)
                     + ann.length_bias * (fa.length - fb.length))
            prob[mask] = expit(logit[mask])
        clean = rng.random(n) < prob
        flip_p = np.array([ann.flip for ann in self.pool])[who]
        flipped = rng.random(n) < flip_p
        labels = (clean ^ flipped).astype(float)
        return Annotations(labels=labels, annotator=who, flipped=flipped, prob=prob)

    def annotate(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str],
                 rng: np.random.Generator) -> np.ndarray:
        """Noisy labels from the annotator pool: 1.0 where ``a`` is preferred, else 0.0."""
        return self.annotate_detailed(prompts, a, b, rng).labels

    # -- datasets -------------------------------------------------------------------------------

    def _distinct_pairs(self, prompts: list[str], rng: np.random.Generator) -> tuple[list[str], list[str]]:
        """Two different base responses per prompt (identical pairs carry no preference)."""
        drawn = self.base_responses(prompts, 2, rng)
        a, b = [d[0] for d in drawn], [d[1] for d in drawn]
        for _ in range(100):
            same = [i for i in range(len(a)) if a[i] == b[i]]
            if not same:
                return a, b
            redraw = self.base_responses([prompts[i] for i in same], 1, rng)
            for i, r in zip(same, redraw):
                b[i] = r[0]
        raise RuntimeError("could not draw two different base responses")  # pragma: no cover

    def pairs(self, n: int, rng: np.random.Generator, *, split: Split = "train",
              responses_per_prompt: int = 2) -> list[PairRecord]:
        """``n`` labelled pairs of base responses on prompts drawn from ``split``.

        With ``responses_per_prompt=2`` each record is one annotator's judgement of two
        different base responses (``annotator`` names who). With ``k > 2`` the pool labels all
        ``k(k-1)/2`` pairs and the record keeps the responses with the most and the fewest wins
        (ties broken at random; ``annotator="pool"``), as in best-vs-worst binarisation.
        """
        if responses_per_prompt < 2:
            raise ValueError(f"responses_per_prompt must be >= 2, got {responses_per_prompt}")
        prompts = self.prompts(split, n, rng=rng)
        if responses_per_prompt == 2:
            a, b = self._distinct_pairs(prompts, rng)
            ann = self.annotate_detailed(prompts, a, b, rng)
            return [
                PairRecord(prompt=p, chosen=x if lab else y, rejected=y if lab else x,
                           annotator=self.pool[k].name)
                for p, x, y, lab, k in zip(prompts, a, b, ann.labels, ann.annotator)
            ]
        responses, wins = self._ranked(prompts, responses_per_prompt, rng)
        records = []
        for p, resp, w in zip(prompts, responses, wins):
            jitter = rng.random(len(resp)) * 1e-3  # random tie-break; wins are multiples of 1/2
            best, worst = int(np.argmax(w + jitter)), int(np.argmin(w + jitter))
            if best == worst:  # pragma: no cover - needs k >= 2 equal-win responses
                worst = (best + 1) % len(resp)
            records.append(PairRecord(prompt=p, chosen=resp[best], rejected=resp[worst], annotator="pool"))
        return records

    def _ranked(self, prompts: list[str], k: int, rng: np.random.Generator) -> tuple[list[list[str]], np.ndarray]:
        """``k`` base responses per prompt and their win counts over all pool-labelled pairs."""
        responses = self.base_responses(prompts, k, rng)
        ii, jj = np.triu_indices(k, 1)
        flat_p = [p for p in prompts for _ in ii]
        flat_a = [r[i] for r in responses for i in ii]
        flat_b = [r[j] for r in responses for j in jj]
        labels = self.annotate(flat_p, flat_a, flat_b, rng).reshape(len(prompts), len(ii))
        wins = np.full((len(prompts), k), 0.5)  # LiPO's Psi_ii = 1/2
        np.add.at(wins, (slice(None), ii), labels)
        np.add.at(wins, (slice(None), jj), 1.0 - labels)
        return responses, wins

    def lists(self, n: int, k: int, rng: np.random.Generator, *, split: Split = "train") -> list[ListRecord]:
        """``n`` lists of ``k`` base responses scored from noisy pairwise labels.

        Every pair in a list is labelled by the pool and ``score_i = (1/k) * (wins_i + 1/2)``,
        LiPO's ``psi_i = (1/K) sum_j Psi_ij`` with ``Psi_ii = 1/2`` (Liu et al. 2024, section 3).
        """
        if k < 2:
            raise ValueError(f"k must be >= 2, got {k}")
        prompts = self.prompts(split, n, rng=rng)
        responses, wins = self._ranked(prompts, k, rng)
        scores = wins / k
        return [ListRecord(prompt=p, responses=r, scores=[float(s) for s in row])
                for p, r, row in zip(prompts, responses, scores)]

    # -- the style game -------------------------------------------------------------------------

    def style_game(self, prompt: str) -> np.ndarray:
        """``G[i, j]`` = P*(style i beats style j | prompt) for responses with the same body.

        Rows and columns: ``lexicon.STYLES`` then "no style". The body's utility cancels, so
        ``G[i, j] = sigmoid(bonus[t, i] - bonus[t, j] + c * S[i, j])`` for the prompt's topic t.
        """
        topic, _ = self.prompt_info(prompt)
        bonus = self.style_bonus_table[topic] if topic >= 0 else np.zeros(_N_STYLE_SLOTS)
        return expit(bonus[:, None] - bonus[None, :] + self.config.cyclic_strength * CYCLE)

    def style_nash(self, prompt: str) -> np.ndarray:
        """A Nash equilibrium (maximin mixture) of :meth:`style_game`, by linear programming."""
        return nash_equilibrium(self.style_game(prompt))

    def ideal_response(self, prompt: str, style: str | None = None) -> str:
        """A response of maximal utility (with the given opener style, or the best-bonus style).

        For a fixed body length the mean value is maximised by the best distinct words, so the
        search is over lengths only; it is exact for this utility.
        """
        key = (prompt, style)
        if key not in self._ideal_cache:
            self._ideal_cache[key] = self._ideal_response(prompt, style)
        return self._ideal_cache[key]

    def _ideal_response(self, prompt: str, style: str | None) -> str:
        topic, _ = self.prompt_info(prompt)
        if topic < 0:
            raise ValueError(f"ideal_response needs a prompt about a topic; got {prompt!r}")
        if style is None:
            style = lx.STYLES[int(np.argmax(self.style_bonus_table[topic, : len(lx.STYLES)]))]
        if style != "none" and style not in lx.STYLES:
            raise ValueError(f"style must be one of {lx.STYLES} or 'none', got {style!r}")
        values = np.asarray(self.config.class_values)
        ranked = sorted(
            list(lx.TOPICS[topic].words) + list(lx.QUALITY_WORDS) + list(lx.FILLER_WORDS),
            key=lambda w: -values[lx.ON_TOPIC if w in lx.TOPICS[topic].words
                                  else text.BODY_CLASS[text.WORD_ID[w]]],
        )
        bodies = [" ".join(ranked[:n]) for n in range(1, len(ranked) + 1)]
        best = bodies[int(np.argmax(self.utility([prompt] * len(bodies), bodies)))]
        return best if style == "none" else f"{lx.OPENERS[style][0]} {best}"

    # -- misc -----------------------------------------------------------------------------------

    def vocabulary(self) -> list[str]:
        """Every word a prompt or base response can contain (to fit a word-level tokenizer)."""
        return list(text.WORDS)

    def describe(self) -> str:
        cfg = self.config
        pool_lines = [
            f"    {a.name}: flip {a.flip:.2f}, length bias {a.length_bias:+.2f}/word, "
            f"sharpness {a.sharpness:.2f}, class weights {list(a.class_weights)}"
            for a in self.pool
        ]
        pool_name = cfg.annotators if isinstance(cfg.annotators, str) else "custom"
        gen = cfg.generator
        values = ", ".join(f"{n} {v:+g}" for n, v in zip(lx.CLASS_NAMES, cfg.class_values))
        lines = [
            f"world {self.name!r} (seed {self.seed})",
            f"  prompts: 'TEMPLATE SUBJECT [briefly|thoroughly]' about {_N_TOPICS} topics "
            f"({', '.join(t.name for t in lx.TOPICS)}); {len(self._splits['train'])} train / "
            f"{len(self._splits['eval'])} eval prompts, disjoint",
            f"  responses: [opener] body; opener styles {', '.join(lx.STYLES)}; "
            f"vocabulary {len(text.WORDS)} words",
            "  true preference: P*(a>b|x) = sigmoid(u(x,a) - u(x,b) + c*S[style(a),style(b)]), "
            f"c = {cfg.cyclic_strength:g} (S: formal > casual > playful > formal)",
            f"  utility: {cfg.content_scale:g} * mean word value ({values}; repeats "
            f"min(v,0)-{cfg.repeat_penalty:g}) - {cfg.length_penalty:g} * |len - L*(x)| "
            f"(L* = 4 briefly, 7 default, 10 thoroughly) + style bonus per topic",
            "  style bonus per topic (" + "/".join(lx.STYLES) + "): " + ", ".join(
                f"{t.name} " + "/".join(f"{b:.2f}" for b in self.style_bonus_table[i, : len(lx.STYLES)])
                for i, t in enumerate(lx.TOPICS)),
            f"  base generator: opener p={gen.opener_prob:g} (styles {list(gen.style_probs)}), "
            f"body length uniform {gen.min_length}..{gen.max_length}, word classes "
            f"{dict(zip(lx.CLASS_NAMES, gen.class_probs))}",
            f"  annotator pool {pool_name!r}:",
            *pool_lines,
            "  evaluation: always under P* (expected win-rate), never noisy labels",
        ]
        return "\n".join(lines)

    def _check_pair_lengths(self, prompts: Sequence[str], responses: Sequence[str]) -> tuple[list[str], list[str]]:
        prompts = text.as_strings(prompts, "prompts")
        responses = text.as_strings(responses, "responses")
        if len(prompts) != len(responses):
            raise ValueError(
                f"prompts and responses must have equal length, got {len(prompts)} and {len(responses)}"
            )
        return prompts, responses

    def __repr__(self) -> str:
        return f"World(name={self.name!r}, seed={self.seed}, c={self.config.cyclic_strength:g})"


def nash_equilibrium(game: np.ndarray) -> np.ndarray:
    """Maximin mixture ``p`` of the symmetric zero-sum game with ``game[i, j] = P(i > j)``.

    Solves ``max_{p, v} v`` subject to ``sum_i p_i (game[i, j] - 1/2) >= v`` for every ``j``,
    ``p`` in the simplex (scipy's HiGHS linear program). For ``P + P^T = 1`` the value is 0.
    """
    game = np.asarray(game, dtype=float)
    k = game.shape[0]
    if game.shape != (k, k):
        raise ValueError(f"game must be square, got shape {game.shape}")
    payoff = game - 0.5
    cost = np.zeros(k + 1)
    cost[-1] = -1.0
    a_ub = np.hstack([-payoff.T, np.ones((k, 1))])
    a_eq = np.concatenate([np.ones(k), [0.0]])[None, :]
    result = linprog(cost, A_ub=a_ub, b_ub=np.zeros(k), A_eq=a_eq, b_eq=[1.0],
                     bounds=[(0, None)] * k + [(None, None)], method="highs")
    if not result.success:  # pragma: no cover - a bounded feasible LP always solves
        raise RuntimeError(f"linear program failed: {result.message}")
    p = np.clip(result.x[:k], 0.0, None)
    return p / p.sum()
