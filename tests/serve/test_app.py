"""The HTTP API of a running daemon: health, readiness, metrics, auth, controls, preview."""

from __future__ import annotations

import itertools
import time

import av
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import TOKEN, wait_for

BUDGET_SLACK_MS = 60.0  # a busy CI machine, as in tests/faults


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``(sample name, sorted labels) -> value`` of a Prometheus text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def status(client, name: str = "or1") -> dict:
    response = client.get(f"/api/pipelines/{name}")
    assert response.status_code == 200, response.text
    return response.json()


def test_health_and_readiness_are_open(anonymous):
    assert anonymous.get("/healthz").json() == {"status": "serving"}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True}


def test_metrics_parse_and_count_frames(anonymous):
    def scrape() -> str:
        response = anonymous.get("/metrics")
        assert response.status_code == 200
        return response.text

    # Latency is recorded from the end of the warm-up (10 frames) on; a frame's infer
    # sample comes before its end-to-end one, so wait for both.
    def latencies() -> str | None:
        text = scrape()
        return text if 'stage="infer"' in text and 'stage="end_to_end_' in text else None

    text = wait_for(latencies, 30, "latencies")
    values = metric_values(text)
    label = (("pipeline", "or1"),)
    assert values[("smokeclear_frames_captured_total", label)] > 0
    assert values[("smokeclear_frames_processed_total", label)] > 0, "the scene is restored"
    assert values[("smokeclear_showing", label)] == 1
    assert ("smokeclear_disk_free_bytes", label) in values
    buckets = [key for key in values if key[0] == "smokeclear_latency_seconds_bucket"]
    stages = {dict(labels)["stage"] for _, labels in buckets}
    assert "infer" in stages and stages & {"end_to_end_processed", "end_to_end_bypass"}, stages
    names = {family.name for family in text_string_to_metric_families(text)}
    assert all(name.startswith("smokeclear_") for name in names), names


@pytest.mark.parametrize(
    "path", ["/api/pipelines", "/api/pipelines/or1", "/api/pipelines/or1/preview.mjpg"]
)
def test_api_and_preview_need_the_token(anonymous, client, path):
    assert anonymous.get(path).status_code == 401
    wrong = anonymous.get(path, headers={"Authorization": "Bearer " + "x" * len(TOKEN)})
    assert wrong.status_code == 401
    assert anonymous.get(path, headers={"Authorization": TOKEN}).status_code == 401
    posted = anonymous.post("/api/pipelines/or1/bypass", json={"bypass": True})
    assert posted.status_code == 401 and not status(client)["bypass"]


def test_login_sets_an_http_only_strict_cookie(anonymous):
    assert anonymous.post("/api/login", json={"token": "wrong" * 5}).status_code == 401
    response = anonymous.post("/api/login", json={"token": TOKEN})
    assert response.status_code == 204
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert anonymous.get("/api/pipelines").status_code == 200, "the cookie is enough"
    anonymous.post("/api/logout")
    anonymous.cookies.clear()
    assert anonymous.get("/api/pipelines").status_code == 401


def test_restorer_switch_is_live_and_never_shows_a_frame_late(client, daemon):
    pipeline = daemon.pipelines.get("or1")
    graph = pipeline.graph
    late_before = graph.counters.late
    response = client.post("/api/pipelines/or1/restorer", json={"restorer": "lowlight"})
    assert response.status_code == 200 and response.json()["switched"], response.text
    assert status(client)["restorer"] == "lowlight"
    assert pipeline.graph is graph, "switched inside the running graph, not by a restart"
    processed = graph.counters.processed
    wait_for(lambda: graph.counters.processed > processed + 3, 30, "the new engine at work")
    budget_ms = graph.settings.budget_ns / 1e6
    for name in ("end to end, processed", "end to end, bypass"):
        samples = graph.latency.samples(name)
        worst = max(samples) / 1e6 if samples else 0.0
        assert worst <= budget_ms + BUDGET_SLACK_MS, f"{name}: a frame shown {worst:.0f} ms late"
    assert graph.counters.late - late_before <= 2, "restored frames were thrown away late"
    back = client.post("/api/pipelines/or1/restorer", json={"restorer": "desmoke"})
    assert back.status_code == 200 and status(client)["restorer"] == "desmoke"


def test_unknown_restorer_is_400_and_the_view_goes_on(client, daemon):
    shown = daemon.pipelines.get("or1").counters().shown_processed
    response = client.post("/api/pipelines/or1/restorer", json={"restorer": "desmoke,nope"})
    assert response.status_code == 400
    assert "unknown restorer 'nope'" in response.json()["detail"]
    wait_for(
        lambda: daemon.pipelines.get("or1").counters().shown_processed > shown + 3,
        10,
        "frames still shown",
    )
    assert status(client)["restorer"] == "desmoke"


def test_bypass_switch_shows_the_raw_picture_then_restored_again(client, daemon):
    on = client.post("/api/pipelines/or1/bypass", json={"bypass": True})
    assert on.status_code == 200 and on.json()["bypass"] is True
    try:
        wait_for(lambda: status(client)["mode"] == "BYPASS", 10, "BYPASS on the view")
        counters = daemon.pipelines.get("or1").counters()
        before = counters.shown_processed
        wait_for(
            lambda: (
                daemon.pipelines.get("or1").counters().bypassed_by_reason.get("switch", 0) >= 10
            ),
            10,
            "10 frames bypassed by the switch",
        )
        assert daemon.pipelines.get("or1").counters().shown_processed <= before + 1
    finally:
        off = client.post("/api/pipelines/or1/bypass", json={"bypass": False})
    assert off.status_code == 200 and off.json()["bypass"] is False

    def switched() -> int:
        return daemon.pipelines.get("or1").counters().bypassed_by_reason.get("switch", 0)

    time.sleep(0.3)  # a view being drawn as it was switched off
    count = switched()
    time.sleep(1.0)
    assert switched() == count, "no frame is bypassed by the switch once it is off"


def test_recording_on_and_off_leaves_a_playable_file(client, recordings):
    on = client.post("/api/pipelines/or1/recording", json={"recording": True})
    assert on.status_code == 200 and on.json()["recording"]["on"], on.text
    file = on.json()["recording"]["file"]
    assert file and "or1-" in file
    time.sleep(2.5)
    off = client.post("/api/pipelines/or1/recording", json={"recording": False})
    assert off.status_code == 200 and not off.json()["recording"]["on"]
    files = sorted(recordings.glob("or1-*.mkv"))
    assert files and not any(".partial." in path.name for path in files), files
    with av.open(str(files[-1])) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    assert len(frames) >= 10, f"2.5 s at 10 fps, got {len(frames)} frames"
    assert frames[0].shape == (96, 160, 3)


def test_preview_is_a_multipart_jpeg_stream(client):
    with client.stream("GET", "/api/pipelines/or1/preview.mjpg") as response:
        assert response.status_code == 200
        kind = response.headers["content-type"]
        assert kind.startswith("multipart/x-mixed-replace; boundary="), kind
        boundary = kind.split("boundary=")[1].encode()
        data = b""
        for chunk in response.iter_bytes():
            data += chunk
            if data.count(b"--" + boundary) >= 3:
                break
    parts = [part for part in data.split(b"--" + boundary) if part.strip()]
    header, _, jpeg = parts[0].partition(b"\r\n\r\n")
    assert b"Content-Type: image/jpeg" in header
    import cv2

    image = cv2.imdecode(np.frombuffer(jpeg.rstrip(b"\r\n"), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (96, 160, 3)


@pytest.mark.parametrize(
    ("body", "expected", "reason"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"restorer": 3}', 400, "must be a str"),
        (b'{"restorer": "desmoke", "x": 1}', 400, "JSON object"),
        (b'{"restorer": ""}', 400, "must be a str"),
        (b"\xff\xfe\x00", 400, "not valid JSON"),
        (b'{"restorer": "' + b"a" * 5000 + b'"}', 413, "over 4096 bytes"),
    ],
)
def test_malformed_requests_get_a_4xx_with_the_reason(client, body, expected, reason):
    response = client.post(
        "/api/pipelines/or1/restorer", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == expected, response.text
    assert reason in response.json()["detail"]


def test_unknown_pipeline_is_404(client):
    response = client.post("/api/pipelines/nope/bypass", json={"bypass": True})
    assert response.status_code == 404 and "no pipeline 'nope'" in response.json()["detail"]


def test_garbage_to_every_endpoint_never_gets_a_5xx(daemon, client, anonymous):
    paths = sorted({route.path for route in daemon.app.routes})
    names = ["or1", "..%2f%00", "a" * 300]
    bodies = [b"", b"{}", b'{"bypass": "yes"}', b"\x00\xff" * 50]
    answered = 0
    for path, name, body, who in itertools.product(paths, names, bodies, (client, anonymous)):
        url = path.replace("{name}", name)
        if url.endswith("preview.mjpg") and who is client and name == "or1":
            continue  # a live stream; its own test reads it
        for method in ("GET", "POST", "PUT", "DELETE"):
            response = who.request(method, url, content=body)
            answered += 1
            assert response.status_code < 500, f"{method} {url} {body!r}: {response.status_code}"
    assert answered > 500
    assert status(client)["showing"], "the display survived it"


def test_without_a_token_only_loopback_host_names_are_answered(daemon):
    import asyncio
    import threading

    import httpx

    from smokeclear.stream.serve.app import create_app

    app = create_app(
        daemon.config.server, None, daemon.pipelines, daemon.metrics, threading.Event()
    )

    async def get(path: str, host: str) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as local:
            return (await local.get(path)).status_code

    assert asyncio.run(get("/api/pipelines", "127.0.0.1:8600")) == 200, "no token on loopback"
    assert asyncio.run(get("/api/pipelines", "evil.example:8600")) == 421, "DNS rebinding"
    assert asyncio.run(get("/healthz", "[::1]:8600")) == 200
    assert asyncio.run(get("/healthz", "localhost")) == 200


def test_previews_beyond_max_previews_get_429_and_slots_come_back(client, daemon):
    import contextlib

    limit = daemon.config.server.max_previews
    url = "/api/pipelines/or1/preview.mjpg"
    with contextlib.ExitStack() as stack:
        for _ in range(limit):
            opened = stack.enter_context(client.stream("GET", url))
            assert opened.status_code == 200
        refused = client.get(url)
        assert refused.status_code == 429 and "max_previews" in refused.json()["detail"]
    wait_for(lambda: client.get("/api/pipelines/or1/preview.jpg").status_code == 200, 5, "a jpg")

    def one_more() -> bool:
        with client.stream("GET", url) as again:
            return again.status_code == 200

    wait_for(one_more, 10, "a preview slot after the others closed")
