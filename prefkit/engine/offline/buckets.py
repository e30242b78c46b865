"""Length buckets: split one micro-batch's rows into a few forwards of similar length.

A padded forward computes ``rows x longest row`` positions. Sorting the rows by length and
cutting them into contiguous groups trades padding for extra forward calls; the split is the
exact minimiser (dynamic programming over sorted lengths) of
``sum_g (longest_g * rows_g) + overhead * groups``, where ``overhead`` is the cost of one more
forward call expressed in token positions. The loss is unchanged: rows are scored
independently and scattered back to their places.
"""

from __future__ import annotations

from collections.abc import Sequence


def length_buckets(lengths: Sequence[int], overhead: int) -> list[list[int]]:
    """Row indices grouped into buckets; ``overhead <= 0`` keeps one bucket (plain padding)."""
    n = len(lengths)
    if n <= 1 or overhead <= 0:
        return [list(range(n))]
    order = sorted(range(n), key=lambda i: lengths[i])
    sorted_lengths = [lengths[i] for i in order]
    best = [0.0] + [float("inf")] * n  # best[j]: cost of the first j sorted rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = sorted_lengths[j - 1]  # sorted ascending: the group's last row is its longest
        for i in range(j):
            cost = best[i] + longest * (j - i) + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], n
    while j > 0:
        i = cut[j]
        groups.append(order[i:j])
        j = i
    return groups[::-1]
