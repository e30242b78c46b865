"""DRAGON's reward functions without preference labels: exemplar and distribution rewards.

DRAGON (Bai, Casebeer, Sojoudi & Bryan 2025, "DRAGON: Distributional Rewards Optimize Diffusion
Generative Models", arXiv 2504.15217; algorithms.md §19) optimises a generator for rewards defined
on an output *and a set of exemplars*, or on a *set* of outputs: a style is specified by examples,
not by pairwise labels. Two of its reward families, on sentence embeddings (all-MiniLM-L6-v2 by
default, ``prefkit.preference.encoder``):

- **instance-to-exemplars**: ``r(y) = cos(e(y), c)`` with ``c`` the normalised centroid of the
  exemplar embeddings (the CLAP-score-to-centroid reward in DRAGON's text-to-music setting);
- **set-to-exemplars**: the Fréchet distance between Gaussians fitted to the embeddings of the
  outputs and of the exemplars (FAD, Kilgour et al. 2019, arXiv 1812.08466, which applies
  Heusel et al. 2017's FID, arXiv 1706.08500, eq. 6):

      FD = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})

  computed as ``Tr((S_1^{1/2} S_2 S_1^{1/2})^{1/2})`` from symmetric eigendecompositions (real,
  no complex ``sqrtm`` round-off); the set reward is ``-FD``. With few samples the covariances are
  rank-deficient and FD is biased upwards (as FAD/FID are); compare sets of equal size.

:meth:`ExemplarReward.leave_one_out` attributes a set reward to its items, ``FD(Y \\ {y_i}) -
FD(Y)`` (positive: ``y_i`` brings the set closer to the exemplars) — one way to split on-policy
samples into the positive and negative sets that DRAGON's contrastive update needs (the exact
attribution DRAGON uses for distribution rewards is not verified here [U]).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

Embed = Callable[[list[str]], np.ndarray]


def gaussian_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [D], covariance [D, D])`` of the rows of ``x`` (unbiased covariance, ``N >= 2``)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 embeddings of shape [N, D], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings must be finite")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu_1: np.ndarray, sigma_1: np.ndarray, mu_2: np.ndarray, sigma_2: np.ndarray) -> float:
    """Fréchet distance between ``N(mu_1, sigma_1)`` and ``N(mu_2, sigma_2)`` (module doc)."""
    mu_1, mu_2 = np.atleast_1d(np.asarray(mu_1, dtype=np.float64)), np.atleast_1d(np.asarray(mu_2, dtype=np.float64))
    sigma_1, sigma_2 = np.atleast_2d(np.asarray(sigma_1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma_2,
                                                                                                      dtype=np.float64))
    d = mu_1.shape[0]
    if mu_2.shape != (d,) or sigma_1.shape != (d, d) or sigma_2.shape != (d, d):
        raise ValueError(f"shapes do not match: mu {mu_1.shape}/{mu_2.shape}, sigma {sigma_1.shape}/{sigma_2.shape}")
    root_1 = _psd_sqrt(sigma_1)
    cross = np.linalg.eigvalsh(root_1 @ sigma_2 @ root_1)
    trace_cross = float(np.sqrt(np.clip(cross, 0.0, None)).sum())
    value = float(np.sum((mu_1 - mu_2) ** 2) + np.trace(sigma_1) + np.trace(sigma_2) - 2.0 * trace_cross)
    return max(value, 0.0)


def frechet_distance_of(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings."""
    return frechet_distance(*gaussian_statistics(x), *gaussian_statistics(y))


class ExemplarReward:
    """Rewards of outputs against a set of exemplars (module doc).

    Args:
        exemplars: texts that define the target (a style, a register, a domain); at least 2.
        embed: texts -> ``[N, D]`` embeddings (default: the MiniLM encoder, unit vectors).
    """

    def __init__(self, exemplars: Sequence[str], embed: Embed | None = None) -> None:
        if embed is None:
            from prefkit.preference.encoder import SentenceEncoder

            embed = SentenceEncoder.load().encode
        self.embed = embed
        exemplars = list(exemplars)
        if len(exemplars) < 2:
            raise ValueError(f"an exemplar set needs at least 2 texts, got {len(exemplars)}")
        self.exemplar_embeddings = np.asarray(embed(exemplars), dtype=np.float64)
        centroid = self.exemplar_embeddings.mean(axis=0)
        norm = np.linalg.norm(centroid)
        if norm == 0:
            raise ValueError("the exemplar embeddings average to zero; no direction to reward")
        self.centroid = centroid / norm
        self.statistics = gaussian_statistics(self.exemplar_embeddings)

    def instance_rewards(self, outputs: Sequence[str]) -> np.ndarray:
        """``[N]`` cosine similarity of each output to the exemplar centroid."""
        e = np.asarray(self.embed(list(outputs)), dtype=np.float64)
        norms = np.linalg.norm(e, axis=1, keepdims=True)
        return (e / np.where(norms == 0, 1.0, norms)) @ self.centroid

    def set_distance(self, outputs: Sequence[str]) -> float:
        """Fréchet distance of the outputs' embedding Gaussian to the exemplars' (lower is closer)."""
        return frechet_distance(*gaussian_statistics(np.asarray(self.embed(list(outputs)))), *self.statistics)

    def set_reward(self, outputs: Sequence[str]) -> float:
        """``-set_distance(outputs)``."""
        return -self.set_distance(outputs)

    def leave_one_out(self, outputs: Sequence[str]) -> np.ndarray:
        """``[N]``: ``FD(outputs without i) - FD(outputs)`` (positive: output ``i`` helps); ``N >= 3``."""
        e = np.asarray(self.embed(list(outputs)), dtype=np.float64)
        if e.shape[0] < 3:
            raise ValueError("leave-one-out needs at least 3 outputs")
        full = frechet_distance(*gaussian_statistics(e), *self.statistics)
        return np.array([frechet_distance(*gaussian_statistics(np.delete(e, i, axis=0)), *self.statistics) - full
                         for i in range(e.shape[0])])


def read_exemplars(path: str | os.PathLike[str]) -> list[str]:
    """Exemplar texts from a file: JSONL rows with a ``text`` (or ``completion``) string, or a plain
    text file with one exemplar per non-empty line; a bad row is an ``InputError`` naming its line."""
    from prefkit.errors import InputError

    source = Path(path)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InputError(f"cannot read the exemplars: {err.strerror or err}", file=str(source)) from None
    out: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if source.suffix.lower() != ".jsonl":
            out.append(line.strip())
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise InputError(f"not a JSON object: {err}", file=str(source), line=number) from None
        key = "text" if isinstance(row, dict) and "text" in row else "completion"
        value = row.get(key) if isinstance(row, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise InputError("an exemplar row needs a non-empty 'text' (or 'completion') string", file=str(source),
                             line=number, field=key)
        out.append(value)
    if len(out) < 2:
        raise InputError(f"an exemplar set needs at least 2 texts, found {len(out)}", file=str(source))
    return out


class ExemplarJudge:
    """An exemplar reward as a scalar-reward judge (``online.judge=exemplars:FILE``): ``embed`` is
    the instance reward ``cos(e(y), c)`` (the prompt is not read: a style is a property of the
    output), ``prob(a, b) = sigmoid((r_a - r_b) / temperature)``; ``reward`` exposes the set
    distance and the leave-one-out attribution (``--method dragon_fd``). ``kind = "exemplar"``:
    the online engine treats it as a scalar reward model."""

    kind = "exemplar"

    def __init__(self, reward: ExemplarReward, *, temperature: float = 0.05, name: str = "exemplars") -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.reward, self.temperature, self.name = reward, float(temperature), name

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, embed: Embed | None = None, **kwargs: Any) -> ExemplarJudge:
        return cls(ExemplarReward(read_exemplars(path), embed=embed), name=f"exemplars:{path}", **kwargs)

    def embed(self, prompts: Sequence[Any], responses: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(self.reward.instance_rewards(list(responses))).float()[:, None]

    def prob_from_embeddings(self, e_a: torch.Tensor, e_b: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((e_a[..., 0] - e_b[..., 0]) / self.temperature)

    def prob(self, prompts: Sequence[Any], a: Sequence[str], b: Sequence[str]) -> torch.Tensor:
        e = self.embed([*prompts, *prompts], [*a, *b])
        return self.prob_from_embeddings(e[:len(a)], e[len(a):])
