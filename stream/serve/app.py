"""The daemon's HTTP API (FastAPI): health, readiness, metrics, status and controls.

Open: ``GET /healthz``, ``/readyz``, ``/metrics`` (no patient data) and ``/`` (the
control page, which holds no data itself). Everything under ``/api`` carries patient
video or changes what the surgeon sees: it needs ``Authorization: Bearer <token>``,
or the ``smokeclear_token`` cookie that ``POST /api/login`` sets (HttpOnly,
SameSite=Strict), compared in constant time. Bodies are JSON objects of at most
``server.max_body_bytes``; anything else is a 4xx with the reason, never a 5xx.

Without a token (allowed on a loopback address only) a request must name a loopback
host in its ``Host`` header: a web page in the tower's browser cannot reach the API
by DNS rebinding.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

import cv2
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from smokeclear.errors import UserError

if TYPE_CHECKING:
    from smokeclear.stream.serve.config import ServerConfig
    from smokeclear.stream.serve.metrics import Metrics
    from smokeclear.stream.serve.pipelines import Pipeline, Pipelines

TOKEN_COOKIE = "smokeclear_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
BOUNDARY = "smokeclear-frame"


def create_app(
    server: ServerConfig,
    token: str | None,
    pipelines: Pipelines,
    metrics: Metrics,
    closing: threading.Event,
) -> FastAPI:
    """The API of ``pipelines``. ``token``: None only on a loopback address (then
    /api is open to local processes). ``closing``: set on shutdown; ends previews."""
    app = FastAPI(title="smokeclear", docs_url=None, redoc_url=None, openapi_url=None)
    page = resources.files("smokeclear.stream.serve").joinpath("page.html").read_text()
    previews = PreviewSlots(server.max_previews)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        if token is None and host_name(request.headers.get("host", "")) not in LOOPBACK_NAMES:
            return JSONResponse(
                {"detail": "without a token the API answers loopback host names only"},
                status_code=421,
            )
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > server.max_body_bytes):
            return JSONResponse(
                {"detail": f"request body over {server.max_body_bytes} bytes"}, status_code=413
            )
        return await call_next(request)

    def require_token(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme.lower() != "bearer":
            supplied = request.cookies.get(TOKEN_COOKIE, "")
        if not hmac.compare_digest(supplied.strip().encode(), token.encode()):
            raise HTTPException(
                401,
                "a valid token is needed: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def pipeline_named(name: str) -> Pipeline:
        pipeline = pipelines.get(name)
        if pipeline is None:
            known = ", ".join(p.name for p in pipelines.all()) or "none"
            raise HTTPException(404, f"no pipeline {name!r} (running: {known})")
        return pipeline

    async def read_json(request: Request, key: str, kind: type) -> Any:
        """The value of ``key`` in a body that is exactly ``{key: <kind>}``."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > server.max_body_bytes:
                raise HTTPException(413, f"request body over {server.max_body_bytes} bytes")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise HTTPException(400, f"the body is not valid JSON: {error}") from None
        example = json.dumps({key: kind()}).replace("false", "true")
        if not isinstance(data, dict) or set(data) != {key}:
            raise HTTPException(400, f"the body must be a JSON object {example}")
        value = data[key]
        if not isinstance(value, kind) or (kind is str and not value.strip()):
            raise HTTPException(400, f"{key} must be a {kind.__name__}, e.g. {example}")
        return value

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "serving"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        reasons = pipelines.not_ready()
        if reasons:
            return JSONResponse({"ready": False, "reasons": reasons}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    def control_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.post("/api/login")
    async def login(request: Request) -> Response:
        supplied = await read_json(request, "token", str)
        if token is not None and not hmac.compare_digest(supplied.encode(), token.encode()):
            raise HTTPException(401, "wrong token")
        response = Response(status_code=204)
        response.set_cookie(
            TOKEN_COOKIE, supplied, httponly=True, samesite="strict", path="/", max_age=30 * 86400
        )
        return response

    @app.post("/api/logout")
    def logout() -> Response:
        response = Response(status_code=204)
        response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/api/pipelines")
    def list_pipelines(request: Request) -> dict[str, Any]:
        require_token(request)
        return {"pipelines": [status_of(p) for p in pipelines.all()], "auth": token is not None}

    @app.get("/api/pipelines/{name}")
    def one_pipeline(name: str, request: Request) -> dict[str, Any]:
        require_token(request)
        return status_of(pipeline_named(name))

    @app.post("/api/pipelines/{name}/restorer")
    async def switch_restorer(name: str, request: Request) -> JSONResponse:
        require_token(request)
        pipeline = pipeline_named(name)
        restorer = await read_json(request, "restorer", str)
        try:
            switched, why = await run_in_threadpool(pipeline.switch_restorer, restorer)
        except UserError as error:
            raise HTTPException(400, str(error)) from None
        body = {"switched": switched, "detail": why, "restorer": pipeline.restorer}
        return JSONResponse(body, status_code=200 if switched else 409)

    @app.post("/api/pipelines/{name}/bypass")
    async def bypass(name: str, request: Request) -> dict[str, Any]:
        require_token(request)
        pipeline = pipeline_named(name)
        pipeline.set_bypass(await read_json(request, "bypass", bool))
        return status_of(pipeline)

    @app.post("/api/pipelines/{name}/recording")
    async def recording(name: str, request: Request) -> dict[str, Any]:
        require_token(request)
        pipeline = pipeline_named(name)
        on = await read_json(request, "recording", bool)
        try:
            await run_in_threadpool(pipeline.recording.set, on)  # stopping finalises the file
        except UserError as error:
            raise HTTPException(409, str(error)) from None
        return status_of(pipeline)

    @app.get("/api/pipelines/{name}/preview.jpg")
    async def snapshot(name: str, request: Request) -> Response:
        require_token(request)
        pipeline = pipeline_named(name)
        view = pipeline.preview.latest
        if view is None:
            raise HTTPException(409, f"pipeline {name} has shown no frame yet")
        jpeg = await run_in_threadpool(encode_preview, view, server.preview_width)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/pipelines/{name}/preview.mjpg")
    def preview(name: str, request: Request) -> StreamingResponse:
        require_token(request)
        pipeline = pipeline_named(name)
        if not previews.take():
            raise HTTPException(
                429, f"{server.max_previews} previews are open (server.max_previews); close one"
            )
        return StreamingResponse(
            mjpeg_frames(pipeline, request, server, closing, previews.give_back),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"Cache-Control": "no-store"},
        )

    return app


def host_name(host: str) -> str:
    """``127.0.0.1:8600`` -> ``127.0.0.1``; ``[::1]:8600`` -> ``[::1]``."""
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() and not host.endswith("]") else host


def status_of(pipeline: Pipeline) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(pipeline.status())


def encode_preview(view, width: int) -> bytes:
    """A JPEG of ``view`` (``(H, W, 3)`` uint8 BGR) scaled down to ``width``."""
    height = round(view.shape[0] * width / view.shape[1])
    if width < view.shape[1]:
        view = cv2.resize(view, (width, height), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", view, (cv2.IMWRITE_JPEG_QUALITY, 75))
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return jpeg.tobytes()


class PreviewSlots:
    """At most ``limit`` previews at once: each one encodes its own JPEGs."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.open -= 1


async def mjpeg_frames(
    pipeline: Pipeline,
    request: Request,
    server: ServerConfig,
    closing: threading.Event,
    done: Callable[[], None],
):
    """``multipart/x-mixed-replace`` parts at ``server.preview_fps``, each a new view;
    ``done`` is called when the client has gone."""
    try:
        async for part in _mjpeg_parts(pipeline, request, server, closing):
            yield part
    finally:
        done()


async def _mjpeg_parts(pipeline: Pipeline, request: Request, server: ServerConfig, closing):
    period = 1.0 / server.preview_fps
    sent = -1
    while not closing.is_set() and not await request.is_disconnected():
        tap = pipeline.preview
        view, views = tap.latest, tap.views
        if view is not None and views != sent:
            sent = views
            jpeg = await run_in_threadpool(encode_preview, view, server.preview_width)
            yield (
                (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(jpeg)}\r\n\r\n"
                ).encode()
                + jpeg
                + b"\r\n"
            )
        await asyncio.sleep(period)
