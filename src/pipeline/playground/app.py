"""The playground's web app: its page, its server-sent events and endpoints, refusing other hosts and origins.

Starlette and uvicorn come with MLflow already; events go one way (frames to the page), so server-sent events
suffice and the page is plain HTML, JavaScript and canvas with no build step (docs/design.md has the figures).
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pipeline.errors import PipelineError

STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Events:
    """Fan-out of the session's events to every open page (one asyncio queue each), from any thread."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    def publish(self, event: dict[str, Any]) -> None:
        if self.loop is not None:
            for queue in list(self.queues):
                self.loop.call_soon_threadsafe(queue.put_nowait, event)

    async def stream(self, request: Request) -> Any:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.queues.add(queue)
        try:
            yield "retry: 1000\n\n"
            while True:
                event = await queue.get()
                yield f"data: {json.dumps(event, separators=(',', ':'))}\n\n"
        finally:
            self.queues.discard(queue)


def page_options() -> dict[str, Any]:
    """What the page offers: each dataset's knobs (its preset's values), the losses, optimizers, activations, features."""
    from pipeline.config.checks import ACTIVATIONS
    from pipeline.config.overrides import group_options
    from pipeline.core.spec import FEATURES
    from pipeline.playground import state

    datasets = {}
    for name in state.DATASETS:
        preset = state.dataset_preset(name)
        datasets[name] = {knob: preset[key] for knob, key in state.DATASET_KNOBS.items() if key in preset}
    groups = group_options()
    return {
        "datasets": datasets,
        "losses": [loss for loss in groups["loss"] if loss != "half_squared_error"],  # the numpy engine's only
        "optimizers": groups["optimizer"],
        "activations": list(ACTIVATIONS),
        "features": list(FEATURES),
        "defaults": state.DEFAULTS,
    }


def user_error(error: PipelineError) -> JSONResponse:
    """A 400 answer with the error's one line and its control, as the page shows an error event."""
    from pipeline.playground.session import error_event

    event = error_event(error)
    return JSONResponse({"error": event["message"], "control": event["control"]}, status_code=400)


def create_app(host: str, port: int, mlflow_ui: str, ready: threading.Event) -> Starlette:
    """The app: the page, its event stream and the endpoints; requests naming another host or origin are refused."""
    from pipeline.playground import save, session, state

    events = Events()
    tries = session.Session(events.publish, mlflow_ui)
    hosts = {host, *LOOPBACK} if host in LOOPBACK else {host}
    origins = {f"http://{h}:{port}" for h in hosts} | {f"http://[{h}]:{port}" for h in hosts if ":" in h}

    async def body(request: Request) -> dict[str, Any]:
        payload = await request.json()
        if not isinstance(payload, dict):
            raise ValueError("a JSON object")
        return payload

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def stream(request: Request) -> Response:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(events.stream(request), media_type="text/event-stream", headers=headers)

    async def options(request: Request) -> Response:
        return JSONResponse(page_options())

    async def status(request: Request) -> Response:
        return JSONResponse({"ready": ready.is_set(), "busy": tries.busy})

    async def check(request: Request) -> Response:
        query = (await body(request)).get("query", {})
        try:
            command = await run_in_threadpool(state.check, query)
        except PipelineError as error:
            return user_error(error)
        return JSONResponse({"command": command})

    async def play(request: Request) -> Response:
        payload = await body(request)
        await run_in_threadpool(ready.wait)
        try:
            chosen = await run_in_threadpool(tries.play, payload.get("query", {}), bool(payload.get("paused")))
        except PipelineError as error:
            return user_error(error)
        return JSONResponse({"command": chosen.command, "query": chosen.query})

    async def seeds(request: Request) -> Response:
        payload = await body(request)
        await run_in_threadpool(ready.wait)
        try:
            await run_in_threadpool(tries.seeds, payload.get("query", {}))
        except PipelineError as error:
            return user_error(error)
        return JSONResponse({"started": True})

    def action(name: str) -> Any:
        async def endpoint(request: Request) -> Response:
            await run_in_threadpool(getattr(tries, name))
            return JSONResponse({name: True})

        return endpoint

    async def save_try(request: Request) -> Response:
        payload = await body(request)
        try:
            saved = await run_in_threadpool(
                save.save, payload.get("query", {}), payload.get("name"), payload.get("overwrite") is True
            )
        except PipelineError as error:
            return user_error(error)
        return JSONResponse(saved, status_code=409 if saved.get("exists") else 200)

    routes = [
        Route("/", index),
        Route("/api/events", stream),
        Route("/api/status", status),
        Route("/api/options", options),
        Route("/api/check", check, methods=["POST"]),
        Route("/api/play", play, methods=["POST"]),
        Route("/api/seeds", seeds, methods=["POST"]),
        Route("/api/save", save_try, methods=["POST"]),
        *(Route(f"/api/{name}", action(name), methods=["POST"]) for name in ("pause", "resume", "step", "reset")),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def same_origin(request: Request, call_next: Any) -> Response:
        # Another site's page (DNS rebinding: a foreign Host; a cross-site fetch or form: a foreign Origin) gets nothing.
        if urlsplit(f"//{request.headers.get('host', '')}").hostname not in {h.strip("[]") for h in hosts}:
            return JSONResponse({"error": "error: Host is not this playground's"}, status_code=403)
        origin = request.headers.get("origin")
        if origin is not None and origin not in origins:
            return JSONResponse({"error": "error: Origin is not this playground's"}, status_code=403)
        if request.method == "POST" and request.headers.get("content-type", "").split(";")[0] != "application/json":
            return JSONResponse({"error": "error: POST takes application/json"}, status_code=415)
        try:
            return await call_next(request)
        except ValueError as error:  # a body that is not a JSON object
            return JSONResponse({"error": f"error: the request body must be a JSON object ({error})"}, status_code=400)

    return Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=same_origin)])
