"""``prefkit studio``: collect pairwise votes in a browser, run an arena, export the votes.

The web app, store and selection live in ``prefkit.studio`` (docs/studio.md); this module only
parses arguments. Registering the command imports nothing heavy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

WORLD_NAMES = ("transitive", "cyclic", "noisy")
DEMO_PROJECT = "demo"
DEMO_PAIRS = 200


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _project_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--project", required=required, metavar="DIR", help="project directory")
    p.add_argument("--db", default=None, metavar="URL",
                   help="SQLAlchemy database URL (default: DIR/studio.db, SQLite in WAL mode)")


def _task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", action="append", default=[], metavar="FILE",
                   help="pairs file (prompt, chosen, rejected) to label; repeatable")
    p.add_argument("--prompts", default=None, metavar="FILE",
                   help="prompts file answered by --policy (two samples of one policy, or one of each of two)")
    p.add_argument("--policy", action="append", default=[], metavar="CKPT",
                   help="checkpoint that answers --prompts (give one or two)")
    p.add_argument("--world", default=None, choices=WORLD_NAMES,
                   help="seed tasks from a simulated world (a demo); `--project demo` does this by itself")
    p.add_argument("--world-pairs", type=_positive, default=DEMO_PAIRS, metavar="N",
                   help=f"pairs drawn from --world (default {DEMO_PAIRS})")
    p.add_argument("--max-new-tokens", type=_positive, default=48, metavar="N",
                   help="tokens generated per answer (--policy, --arena; default 48)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    p.add_argument("--seed", type=int, default=None, help="generation and world seed (default 0)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "studio",
        help="label pairs in a browser, run an arena between checkpoints, export the votes",
        description=(
            "Serve the studio web app for a project directory (created on first use, with an owner "
            "token printed once). `prefkit studio --project demo` serves a demo seeded from the "
            "simulated world. Subcommands: export, annotator, import. See docs/studio.md."
        ),
    )
    _project_args(p, required=False)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    _task_args(p)
    p.add_argument("--arena", nargs="+", default=None, metavar="CKPT",
                   help="run an arena between these checkpoints (two or more)")
    p.add_argument("--arena-prompts", default=None, metavar="FILE", help="prompts the arena can draw from")
    p.add_argument("--overlap", type=_positive, default=None, metavar="K", help="annotators per task (default 1)")
    p.add_argument("--selection", choices=("random", "bald", "variance"), default=None,
                   help="task order: random, or active selection by BALD / ensemble variance (default random)")
    p.add_argument("--refit-every", type=_positive, default=None, metavar="N",
                   help="refit the selection ensemble every N votes (default 20)")
    p.add_argument("--ensemble", choices=("bt", "gpm"), default=None, help="selection ensemble members (default bt)")
    p.add_argument("--ensemble-size", type=int, default=None, metavar="M", help="ensemble members (default 8)")
    p.add_argument("--tie", dest="allow_tie", action=argparse.BooleanOptionalAction, default=None,
                   help="offer 'tie' (default on)")
    p.add_argument("--both-bad", dest="allow_both_bad", action=argparse.BooleanOptionalAction, default=None,
                   help="offer 'both bad' (default on)")
    p.add_argument("--critique", choices=("off", "optional", "required"), default=None,
                   help="written critique per vote (default optional)")
    p.add_argument("--guideline", default=None, metavar="FILE", help="Markdown guidelines shown above each task")
    p.add_argument("--render", choices=("markdown", "text"), default=None,
                   help="show prompts and responses as sanitised Markdown or escaped text (default markdown)")
    p.add_argument("--lock-minutes", type=_positive, default=None, metavar="M",
                   help="minutes a served task stays reserved for its annotator (default 60)")
    p.add_argument("--admin", default="owner", metavar="HANDLE", help="handle of the owner created with a new project")
    p.add_argument("--https-cookies", action="store_true",
                   help="mark the session cookie Secure (serve behind HTTPS)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--json", action="store_true", help="print start-up facts as one JSON object")
    p.set_defaults(func=run_serve)

    studio_sub = p.add_subparsers(dest="studio_command", metavar="SUBCOMMAND")

    e = studio_sub.add_parser("export", help="write the votes as TRL-format pairs (JSON Lines)",
                              description="One row per vote in vote order (reproducible): prompt, chosen, "
                                          "rejected, label (0.5 for a tie or both bad), annotator, verdict, "
                                          "critique, confidence, position, duration_ms, ... Atomic write.")
    _project_args(e)
    e.add_argument("--out", required=True, metavar="FILE", help="output .jsonl")
    e.add_argument("--no-ties", action="store_true", help="leave ties and 'both bad' votes out")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=run_export)

    a = studio_sub.add_parser("annotator", help="add, list, revoke, restore annotators; rotate a token")
    a.add_argument("action", choices=("add", "list", "revoke", "restore", "token"))
    _project_args(a)
    a.add_argument("--handle", default=None, help="the annotator's handle")
    a.add_argument("--role", choices=("annotator", "admin"), default="annotator")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.set_defaults(func=run_annotator)

    i = studio_sub.add_parser("import", help="add tasks to a project (created if needed) without serving")
    _project_args(i)
    _task_args(i)
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=run_import)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from prefkit.errors import InputError

    pairs = {"overlap": "overlap_k", "selection": "selection", "refit_every": "refit_every",
             "ensemble": "ensemble_kind", "ensemble_size": "ensemble_size", "allow_tie": "allow_tie",
             "allow_both_bad": "allow_both_bad", "critique": "critique", "render": "render",
             "lock_minutes": "lock_minutes", "seed": "seed"}
    settings = {key: getattr(args, flag) for flag, key in pairs.items() if getattr(args, flag, None) is not None}
    if getattr(args, "guideline", None):
        try:
            settings["guideline_md"] = Path(args.guideline).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"cannot read the guideline: {err}", file=args.guideline) from err
    return settings


def _import_tasks(store: Any, args: argparse.Namespace, *, demo: bool) -> list[Any]:
    from prefkit.errors import InputError
    from prefkit.studio import tasks

    if args.policy and not args.prompts:
        raise InputError("--policy answers --prompts FILE; pass both", field="policy")
    if args.prompts and not args.policy:
        raise InputError("--prompts FILE needs --policy CKPT (one or two) to answer it", field="prompts")
    seed = args.seed if args.seed is not None else 0
    summaries = [tasks.import_pairs_file(store, path) for path in args.tasks]
    if args.prompts:
        summaries.append(tasks.generate_tasks(store, args.prompts, args.policy, max_new_tokens=args.max_new_tokens,
                                              temperature=args.temperature, seed=seed))
    world = args.world or ("transitive" if demo else None)
    if world:
        summaries.append(tasks.seed_from_world(store, world, n=args.world_pairs, seed=seed))
    return summaries


def _open(args: argparse.Namespace, *, create: bool, settings: dict[str, Any] | None = None) -> tuple[Any, bool]:
    from prefkit.studio.store import open_project

    return open_project(args.project, db=args.db, create=create, settings=settings)


def run_serve(args: argparse.Namespace) -> int:
    import shutil

    from prefkit.errors import InputError
    from prefkit.studio.server import bind, is_loopback

    if args.project is None:
        raise InputError("--project DIR is required (e.g. prefkit studio --project demo)", field="project")
    sock = bind(args.host, args.port)  # first: a port in use fails before anything is written
    created_dir = not Path(args.project).exists()
    store = None
    try:
        settings = _settings(args)
        store, created = _open(args, create=True, settings=settings)
        owner_token = None
        if created:
            from prefkit.studio.annotators import add_annotator

            _, owner_token = add_annotator(store, args.admin, role="admin")
        demo = created and Path(args.project).name == DEMO_PROJECT and not (args.tasks or args.prompts or args.arena)
        summaries = _import_tasks(store, args, demo=demo)
        arena = None
        if args.arena:
            from prefkit.studio.arena import Arena

            arena = Arena(store, args.arena, prompts_file=args.arena_prompts, max_new_tokens=args.max_new_tokens,
                          temperature=args.temperature, seed=args.seed)
        from prefkit.studio.queue import progress

        if progress(store).pairs == 0 and arena is None:
            raise InputError("the project has no tasks: pass --tasks FILE, --prompts FILE --policy CKPT, "
                             "--world transitive, or --arena CKPT CKPT", file=args.project)
    except BaseException:
        sock.close()
        if store is not None:
            store.close()
        if created_dir and Path(args.project).exists():
            shutil.rmtree(args.project, ignore_errors=True)
        raise
    from prefkit.studio.active import Refitter
    from prefkit.studio.app import create_app
    from prefkit.studio.server import serve

    host_port = sock.getsockname()[:2]
    url_host = f"[{host_port[0]}]" if ":" in host_port[0] else host_port[0]
    url = f"http://{url_host}:{host_port[1]}"
    facts = {"url": url, "project": str(args.project), "created": created,
             "tasks": progress(store).pairs, "imported": [s.describe() for s in summaries],
             "arena": list(args.arena or []), "selection": store.project().selection}
    if owner_token:
        facts.update({"owner": args.admin, "owner_token": owner_token, "sign_in": f"{url}/login#token={owner_token}"})
    if args.json:
        print(json.dumps(facts), flush=True)
    else:
        for summary in summaries:
            print(f"imported {summary.describe()}" + "".join(f"\n  note: {n}" for n in summary.notes))
        if owner_token:
            print(f"new project {args.project}: owner {args.admin!r}, token (shown once, only its hash is kept):\n"
                  f"  {owner_token}\n  sign in: {url}/login#token={owner_token}")
        print(f"prefkit studio: serving {facts['tasks']} tasks"
              f"{' and an arena of ' + str(len(args.arena)) + ' checkpoints' if args.arena else ''}"
              f" at {url} (selection: {facts['selection']}; Ctrl-C stops)", flush=True)
    if not is_loopback(host_port[0]):
        print(f"prefkit studio: warning: listening on {host_port[0]}, reachable from other machines; "
              "serve behind HTTPS and pass --https-cookies", file=sys.stderr, flush=True)
    refitter = Refitter(store, log=lambda m: print(m, file=sys.stderr, flush=True))
    app = create_app(store, arena=arena, refitter=refitter, https_only=args.https_cookies)
    try:
        serve(app, sock, log_level=args.log_level)
    finally:
        store.close()
    return 0


def run_export(args: argparse.Namespace) -> int:
    from prefkit.studio.export import export_jsonl

    store, _ = _open(args, create=False)
    try:
        n = export_jsonl(store, args.out, ties=not args.no_ties)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"out": args.out, "rows": n}))
    else:
        print(f"wrote {n} votes to {args.out}")
    return 0


def run_annotator(args: argparse.Namespace) -> int:
    from prefkit.errors import InputError
    from prefkit.studio import annotators

    if args.action != "list" and not args.handle:
        raise InputError(f"annotator {args.action} needs --handle", field="handle")
    store, _ = _open(args, create=False)
    try:
        if args.action == "add":
            info, token = annotators.add_annotator(store, args.handle, args.role)
            out: dict[str, Any] = {"handle": info.handle, "role": info.role, "token": token}
            text = f"{info.handle} ({info.role}): token (shown once) {token}"
        elif args.action == "token":
            token = annotators.rotate_token(store, args.handle)
            out = {"handle": args.handle, "token": token}
            text = f"{args.handle}: new token (the old one no longer works) {token}"
        elif args.action in ("revoke", "restore"):
            info = annotators.set_active(store, args.handle, args.action == "restore")
            out = {"handle": info.handle, "active": info.active}
            text = f"{info.handle}: {'active' if info.active else 'revoked'}"
        else:
            rows = annotators.list_annotators(store)
            out = {"annotators": [{"handle": r.handle, "role": r.role, "active": r.active} for r in rows]}
            text = "\n".join(f"{r.handle}\t{r.role}\t{'active' if r.active else 'revoked'}" for r in rows)
    finally:
        store.close()
    print(json.dumps(out) if args.json else text)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from prefkit.errors import InputError

    if not (args.tasks or args.prompts or args.world):
        raise InputError("nothing to import: pass --tasks FILE, --prompts FILE --policy CKPT or --world NAME")
    store, _ = _open(args, create=True)
    try:
        summaries = _import_tasks(store, args, demo=False)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"imported": [vars(s) for s in summaries]}))
    else:
        for s in summaries:
            print(f"imported {s.describe()}" + "".join(f"\n  note: {n}" for n in s.notes))
    return 0
