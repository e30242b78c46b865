"""Pure preference losses: tensors in, unreduced per-example tensor out; one registry."""

from __future__ import annotations

from prefkit.losses._checks import get_validation, set_validation, validation
from prefkit.losses._spec import LossSpec
from prefkit.losses.online import online_ipo

LOSSES: dict[str, LossSpec] = {
    "online_ipo": LossSpec(
        name="online_ipo",
        fn=online_ipo,
        kind="online",
        paper="Zhou, Fazel & Du 2025, EGPO, arXiv 2503.08942, online-IPO loss (§3.3)",
        online=True,
        needs_oracle=True,
    ),
}

__all__ = ["LOSSES", "LossSpec", "get_validation", "online_ipo", "set_validation", "validation"]
