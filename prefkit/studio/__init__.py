"""prefkit studio: collect pairwise votes in a browser, run an arena, pick pairs by BALD.

- ``store``: the project store (SQLite in WAL mode or any SQLAlchemy URL; Alembic migrations),
  ``open_project(DIR, create=...)``.
- ``tasks``: pairs files, prompts answered by policies, a simulated world into tasks.
- ``queue``: serving tasks and recording votes (canonical verdicts, overlap, undo).
- ``annotators``: tokens (hashed at rest), roles, revocation.
- ``active``: the BT/GPM ensemble refitted on the votes and its BALD / variance scores.
- ``ratings``: the arena leaderboard (BT with bootstrap intervals, win rates, cycles, GPM).
- ``agreement``: Cohen's / Fleiss' kappa, position bias, time per vote.
- ``export``: the votes as TRL pairs (``prefkit studio export``, ``--data studio:DIR``).
- ``app``, ``server``: the Starlette app and its uvicorn server.

docs/studio.md has the guide. Needs the ``studio`` extra (``pip install 'prefkit[studio]'``).
"""
