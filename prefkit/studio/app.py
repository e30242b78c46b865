"""The studio web app (Starlette): server-rendered pages, a little plain JavaScript, a JSON API.

Security (docs/studio.md has the whole list): a signed session cookie (HttpOnly, SameSite=Strict,
``Secure`` with ``https_only``) holding only the annotator id, the token's fingerprint and the
CSRF token; a CSRF token checked on every POST (hidden form field, or the ``X-CSRF-Token``
header from JavaScript); ``Authorization: Bearer TOKEN`` for scripts (not sent by browsers on
their own, so it needs no CSRF token); each annotator reads only their own tasks and votes;
a body limit on every request; a strict Content-Security-Policy (no inline script), and
escaped or sanitised rendering of every prompt and response (``prefkit.studio.render``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from prefkit.studio import queue
from prefkit.studio.annotators import (
    AnnotatorInfo,
    add_annotator,
    authenticate,
    session_annotator,
    set_active,
)
from prefkit.studio.errors import StudioError, TaskRefused
from prefkit.studio.render import render
from prefkit.studio.security import MAX_BODY_BYTES, new_csrf_token, same_token
from prefkit.studio.store import Store

HERE = Path(__file__).parent
SESSION_COOKIE = "prefkit_studio"
SESSION_DAYS = 14
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (by Content-Length, or while they stream)."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    response = PlainTextResponse(f"request body over {self.max_bytes} bytes", status_code=413)
                    await response(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


class SecurityHeaders:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *[(k, v) for k, v in SECURITY_HEADERS if k not in present]]
            await send(message)

        await self.app(scope, receive, with_headers)


class Studio:
    """The routes, bound to one store (and optionally an arena and a background refitter)."""

    def __init__(self, store: Store, *, arena: Any = None, refitter: Any = None, n_boot: int = 100) -> None:
        self.store, self.arena, self.refitter, self.n_boot = store, arena, refitter, n_boot
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["untrusted"] = self._render
        self.board_cache: tuple[tuple[Any, ...], Any] | None = None
        self.render_mode = store.project().render

    def _render(self, text: str | None) -> Any:
        return render(text, self.render_mode)

    # -- sessions and checks --------------------------------------------------------------------

    @staticmethod
    def csrf(request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = new_csrf_token()
            request.session["csrf"] = token
        return token

    def user(self, request: Request) -> AnnotatorInfo | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            try:
                info = authenticate(self.store, header[7:])
            except StudioError as err:
                raise HTTPException(401, str(err)) from err
            request.state.bearer = True
            return info
        request.state.bearer = False
        aid = request.session.get("aid")
        if aid is None:
            return None
        info = session_annotator(self.store, aid, request.session.get("fp"))
        if info is None:  # revoked or rotated: the session ends
            request.session.clear()
        return info

    async def form(self, request: Request) -> Any:
        """The submitted form, once its CSRF token matches the session's (else 403)."""
        form = await request.form(max_files=0, max_fields=32)
        if not same_token(request.session.get("csrf"), form.get("csrf_token")):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
        return form

    async def api_body(self, request: Request) -> dict[str, Any]:
        """A JSON body; a session-authenticated call also needs the ``X-CSRF-Token`` header."""
        if not getattr(request.state, "bearer", False) and not same_token(
                request.session.get("csrf"), request.headers.get("x-csrf-token")):
            raise HTTPException(403, "missing or wrong CSRF token (X-CSRF-Token header)")
        try:
            body = await request.json()
        except ValueError as err:
            raise HTTPException(400, "the body must be a JSON object") from err
        if not isinstance(body, dict):
            raise HTTPException(400, "the body must be a JSON object")
        return body

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        user = context.pop("user", None)
        project = self.store.project()
        flash = request.session.pop("flash", None)
        return self.templates.TemplateResponse(request, name, {
            "user": user, "csrf_token": self.csrf(request), "project": project, "arena": self.arena is not None,
            "flash": flash, **context}, status_code=status)

    def signed_in(self, request: Request) -> AnnotatorInfo:
        user = self.user(request)
        if user is None:
            raise HTTPException(303, "sign in", headers={"location": "/login"})
        return user

    def api_user(self, request: Request) -> AnnotatorInfo:
        user = self.user(request)
        if user is None:
            raise HTTPException(401, "sign in first (session cookie or Authorization: Bearer TOKEN)")
        return user

    def admin(self, request: Request) -> AnnotatorInfo:
        user = self.signed_in(request)
        if user.role != "admin":
            raise HTTPException(403, "the admin page is for the project owner")
        return user

    # -- pages ------------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/label" if self.user(request) else "/login", 303)

    async def login_page(self, request: Request) -> Response:
        return self.page(request, "login.html")

    async def login(self, request: Request) -> Response:
        form = await self.form(request)
        try:
            info = authenticate(self.store, str(form.get("token", "")))
        except StudioError as err:
            return self.page(request, "login.html", status=401, error=str(err))
        request.session.clear()
        request.session.update({"aid": info.id, "fp": info.token_fingerprint, "csrf": new_csrf_token()})
        return RedirectResponse("/label", 303)

    async def logout(self, request: Request) -> Response:
        await self.form(request)
        request.session.clear()
        return RedirectResponse("/login", 303)

    def _label_page(self, request: Request, user: AnnotatorInfo, task: queue.Task | None, *, mode: str) -> Response:
        progress = queue.progress(self.store, user.id)
        if task is None:
            return self.page(request, "empty.html", user=user, progress=progress)
        guideline = self._render(self.store.project().guideline_md) if self.store.project().guideline_md else None
        return self.page(request, "label.html", user=user, task=task, progress=progress, mode=mode,
                         nonce=secrets.token_urlsafe(16), guideline=guideline)

    async def label(self, request: Request) -> Response:
        user = self.signed_in(request)
        return self._label_page(request, user, queue.next_task(self.store, user.id), mode="label")

    async def vote_form(self, request: Request) -> Response:
        user = self.signed_in(request)
        form = await self.form(request)
        assignment = form.get("assignment")
        try:
            result = queue.vote(self.store, user.id, assignment, form.get("choice"), critique=form.get("critique"),
                                confidence=form.get("confidence"), duration_ms=form.get("duration_ms"),
                                nonce=form.get("nonce"))
        except TaskRefused as err:
            if err.status == 403:
                raise HTTPException(403, err.reason) from err
            request.session["flash"] = err.reason
            if form.get("mode") == "arena" and err.status == 400:
                return RedirectResponse(f"/arena/battle/{int(assignment)}", 303)
            return RedirectResponse("/label", 303)
        self._notify()
        if form.get("mode") == "arena":
            return RedirectResponse(f"/arena/reveal/{int(assignment)}", 303)
        if result.duplicate:
            request.session["flash"] = "that vote was already recorded"
        return RedirectResponse("/label", 303)

    async def undo_form(self, request: Request) -> Response:
        user = self.signed_in(request)
        await self.form(request)
        reopened = queue.undo_last(self.store, user.id)
        request.session["flash"] = "your last vote was taken back" if reopened else "nothing to undo"
        self._notify()
        return RedirectResponse("/label", 303)

    async def mine(self, request: Request) -> Response:
        user = self.signed_in(request)
        total, votes = queue.own_votes(self.store, user.id)
        return self.page(request, "mine.html", user=user, total=total, votes=votes)

    def board(self) -> Any:
        from prefkit.studio.ratings import arena_battles, leaderboard, record_run

        battles = tuple(arena_battles(self.store))
        if self.board_cache is None or self.board_cache[0] != battles:  # recomputed when a vote changes
            board = leaderboard(list(battles), n_boot=self.n_boot)
            if board is not None:
                record_run(self.store, board)
            self.board_cache = (battles, board)
        return self.board_cache[1]

    async def leaderboard_page(self, request: Request) -> Response:
        user = self.signed_in(request)
        board = self.board()
        return self.page(request, "leaderboard.html", user=user, board=board,
                         order=board.order() if board else [], rate=board.win_rate() if board else None)

    async def admin_page(self, request: Request) -> Response:
        from prefkit.studio.agreement import report

        user = self.admin(request)
        return self.page(request, "admin.html", user=user, report=report(self.store),
                         refit=self.refitter.state() if self.refitter else None)

    async def admin_add(self, request: Request) -> Response:
        from prefkit.studio.agreement import report

        user = self.admin(request)
        form = await self.form(request)
        try:
            info, token = add_annotator(self.store, str(form.get("handle", "")), str(form.get("role", "annotator")))
        except StudioError as err:
            request.session["flash"] = str(err)
            return RedirectResponse("/admin", 303)
        return self.page(request, "admin.html", user=user, report=report(self.store), new_token=token,
                         new_handle=info.handle, refit=self.refitter.state() if self.refitter else None)

    async def admin_active(self, request: Request) -> Response:
        user = self.admin(request)
        form = await self.form(request)
        handle = str(form.get("handle", ""))
        active = request.path_params["action"] == "restore"
        if handle == user.handle and not active:
            request.session["flash"] = "you cannot revoke yourself"
            return RedirectResponse("/admin", 303)
        try:
            set_active(self.store, handle, active)
            request.session["flash"] = f"{handle}: {'restored' if active else 'revoked'}"
        except StudioError as err:
            request.session["flash"] = str(err)
        return RedirectResponse("/admin", 303)

    # -- arena ------------------------------------------------------------------------------------

    def _arena(self) -> Any:
        if self.arena is None:
            raise HTTPException(404, "this studio runs no arena (start it with --arena CKPT CKPT ...)")
        return self.arena

    async def arena_page(self, request: Request) -> Response:
        user = self.signed_in(request)
        arena = self._arena()
        return self.page(request, "arena.html", user=user, can_draw=bool(arena.prompts))

    async def arena_battle(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        user = self.signed_in(request)
        arena = self._arena()
        form = await self.form(request)
        try:
            prompt = arena.draw_prompt() if form.get("draw") else form.get("prompt")
            assignment = await run_in_threadpool(arena.battle, user.id, prompt)
        except TaskRefused as err:
            request.session["flash"] = err.reason
            return RedirectResponse("/arena", 303)
        return RedirectResponse(f"/arena/battle/{assignment}", 303)

    async def arena_view(self, request: Request) -> Response:
        from prefkit.studio.schema import Assignment

        user = self.signed_in(request)
        self._arena()
        assignment_id = request.path_params["assignment"]
        try:
            task = queue.task_for(self.store, user.id, assignment_id)
        except TaskRefused as err:
            raise HTTPException(err.status, err.reason) from err
        with self.store.read() as s:
            done = s.get(Assignment, assignment_id).status == "done"
        if done:
            return RedirectResponse(f"/arena/reveal/{assignment_id}", 303)
        return self.page(request, "label.html", user=user, task=task, progress=None, mode="arena",
                         nonce=secrets.token_urlsafe(16), guideline=None)

    async def arena_reveal(self, request: Request) -> Response:
        from prefkit.studio.arena import reveal

        user = self.signed_in(request)
        self._arena()
        try:
            shown = reveal(self.store, user.id, request.path_params["assignment"])
        except TaskRefused as err:
            raise HTTPException(err.status, err.reason) from err
        task = queue.task_for(self.store, user.id, request.path_params["assignment"])
        return self.page(request, "reveal.html", user=user, reveal=shown, task=task)

    # -- JSON API ---------------------------------------------------------------------------------

    @staticmethod
    def task_json(task: queue.Task | None) -> Any:
        if task is None:
            return None
        return {"assignment": task.assignment_id, "prompt": task.prompt, "left": task.left, "right": task.right}

    async def api_task(self, request: Request) -> Response:
        user = self.api_user(request)
        task = queue.next_task(self.store, user.id)
        return JSONResponse({"task": self.task_json(task), "progress": vars(queue.progress(self.store, user.id))})

    async def api_vote(self, request: Request) -> Response:
        user = self.api_user(request)
        body = await self.api_body(request)
        try:
            result = queue.vote(self.store, user.id, body.get("assignment"), body.get("choice"),
                                critique=body.get("critique"), confidence=body.get("confidence"),
                                duration_ms=body.get("duration_ms"), nonce=body.get("nonce"))
        except TaskRefused as err:
            return JSONResponse({"error": err.reason, "field": err.field}, status_code=err.status)
        self._notify()
        return JSONResponse({"vote": result.label_id, "verdict": result.verdict, "duplicate": result.duplicate})

    async def api_undo(self, request: Request) -> Response:
        user = self.api_user(request)
        await self.api_body(request)
        reopened = queue.undo_last(self.store, user.id)
        self._notify()
        return JSONResponse({"reopened": reopened})

    async def api_status(self, request: Request) -> Response:
        user = self.api_user(request)
        project = self.store.project()
        progress = queue.progress(self.store, user.id)
        return JSONResponse({"pairs": progress.pairs, "closed": progress.closed, "labels": progress.labels,
                             "mine": progress.mine, "selection": project.selection, "overlap": project.overlap_k,
                             "refit": self.refitter.state() if self.refitter else None})

    async def api_leaderboard(self, request: Request) -> Response:
        from prefkit.studio.ratings import as_json

        self.api_user(request)
        board = self.board()
        return JSONResponse(as_json(board) if board else {"battles": 0, "models": []})

    async def api_me(self, request: Request) -> Response:
        user = self.api_user(request)
        total, votes = queue.own_votes(self.store, user.id)
        return JSONResponse({"handle": user.handle, "votes": total, "latest": [
            {"vote": v.label_id, "prompt": v.prompt, "chose": v.chose, "critique": v.critique,
             "confidence": v.confidence} for v in votes]})

    def _notify(self) -> None:
        if self.refitter is not None:
            self.refitter.notify()

    # -- errors -----------------------------------------------------------------------------------

    async def refused(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TaskRefused)
        return await self.http_error(request, HTTPException(exc.status, exc.reason))

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 303 and exc.headers:
            return RedirectResponse(exc.headers["location"], 303)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return self.templates.TemplateResponse(request, "error.html", {
            "user": None, "csrf_token": self.csrf(request), "project": self.store.project(), "arena": False,
            "flash": None, "status": exc.status_code, "message": exc.detail}, status_code=exc.status_code)


Handler = Callable[[Request], Awaitable[Response]]


def create_app(store: Store, *, arena: Any = None, refitter: Any = None, https_only: bool = False,
               n_boot: int = 100) -> Starlette:
    """The ASGI app for ``store``. ``refitter`` (an :class:`prefkit.studio.active.Refitter`) is
    started and stopped with the app."""
    studio = Studio(store, arena=arena, refitter=refitter, n_boot=n_boot)
    routes = [
        Route("/", studio.home),
        Route("/login", studio.login_page, methods=["GET"]),
        Route("/login", studio.login, methods=["POST"]),
        Route("/logout", studio.logout, methods=["POST"]),
        Route("/label", studio.label, methods=["GET"]),
        Route("/vote", studio.vote_form, methods=["POST"]),
        Route("/undo", studio.undo_form, methods=["POST"]),
        Route("/mine", studio.mine, methods=["GET"]),
        Route("/leaderboard", studio.leaderboard_page, methods=["GET"]),
        Route("/admin", studio.admin_page, methods=["GET"]),
        Route("/admin/annotators", studio.admin_add, methods=["POST"]),
        Route("/admin/annotators/{action:str}", studio.admin_active, methods=["POST"]),
        Route("/arena", studio.arena_page, methods=["GET"]),
        Route("/arena/battle", studio.arena_battle, methods=["POST"]),
        Route("/arena/battle/{assignment:int}", studio.arena_view, methods=["GET"]),
        Route("/arena/reveal/{assignment:int}", studio.arena_reveal, methods=["GET"]),
        Route("/api/task", studio.api_task, methods=["GET"]),
        Route("/api/vote", studio.api_vote, methods=["POST"]),
        Route("/api/undo", studio.api_undo, methods=["POST"]),
        Route("/api/status", studio.api_status, methods=["GET"]),
        Route("/api/leaderboard", studio.api_leaderboard, methods=["GET"]),
        Route("/api/me", studio.api_me, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if refitter is not None:
            refitter.start()
        try:
            yield
        finally:
            if refitter is not None:
                refitter.stop()

    middleware = [
        Middleware(SecurityHeaders),
        Middleware(BodyLimit),
        Middleware(SessionMiddleware, secret_key=store.secret_key(), session_cookie=SESSION_COOKIE,
                   max_age=SESSION_DAYS * 24 * 3600, same_site="strict", https_only=https_only),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers={HTTPException: studio.http_error, TaskRefused: studio.refused})
    app.state.studio = studio
    return app
