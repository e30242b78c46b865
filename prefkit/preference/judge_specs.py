"""Which language judge a spec names: ``llm:SPEC`` or ``rubric:FILE``.

``online.judge`` and ``prefkit rm eval --model`` take a judge spec; :func:`language_judge` turns it
into the judge (an ``LLMJudge``, a ``GenerativeJudge`` for a judge trained by prefkit, or a
``RubricJudge``). It imports both ``llm_judge`` and ``rubrics``; living apart from them, it
lets ``llm_judge`` stay below ``rubrics``, which builds on it (a rubric judge is an ``LLMJudge``).
"""

from __future__ import annotations

from typing import Any

from prefkit.preference.llm_judge import LLMJudge, parse_labels, read_template
from prefkit.preference.rubrics import RubricJudge


def language_judge(spec: str, *, labels: str | None = None, template: str | None = None, device: str = "auto",
                   trust_remote_code: bool = False) -> Any:
    """The judge an ``online.judge`` / ``rm eval --model`` spec names: ``llm:SPEC`` (an
    :class:`LLMJudge`; ``SPEC`` as in :meth:`LLMJudge.from_spec`) or ``rubric:FILE`` (a
    :class:`RubricJudge` from a rubric file). ``labels`` is ``"X,Y"``; ``template`` a template
    file."""
    kwargs: dict[str, Any] = {}
    if labels is not None:
        kwargs["labels"] = parse_labels(labels)
    if template is not None:
        kwargs["template"] = read_template(template, extra=("rubric",) if spec.startswith("rubric:") else ())
    if spec.startswith("rubric:"):
        return RubricJudge.from_file(spec[len("rubric:"):], device=device, trust_remote_code=trust_remote_code,
                                     **kwargs)
    if not spec.startswith("llm:") or not spec[len("llm:"):]:
        raise ValueError(f"a language judge is llm:SPEC or rubric:FILE, got {spec!r}")
    return LLMJudge.from_spec(spec[len("llm:"):], device=device, trust_remote_code=trust_remote_code, **kwargs)
