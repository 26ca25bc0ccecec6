"""HTTP server: a real uvicorn process under concurrent load with bad payloads mixed in, metrics, graceful
shutdown; in-process checks of segmentation/SAM responses, payload validation and the dynamic batcher."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from evit_deploy.predict import Predictor, decode_png, rle_decode
from evit_deploy.samples import sample_photo, sample_photos
from evit_deploy.serve import DynamicBatcher, Overloaded, create_app
from evit_deploy.serve.client import Payload, ServerProcess, json_payload, multipart_payload, raw_payload, run_load

from .shared_exports import build_cls_export, build_seg_export, sam_coffee_image, sam_onnx_predictor

MAX_BYTES = 2_000_000


def encode(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    """The four sample photos as real image files (two PNG, two JPEG)."""
    formats = {"astronaut": "JPEG", "chelsea": "PNG", "coffee": "JPEG", "rocket": "PNG"}
    return {name: encode(array, formats[name]) for name, array in sample_photos().items()}


@pytest.fixture(scope="module")
def cls_folder():
    return build_cls_export()[0]


@pytest.fixture(scope="module")
def expected(cls_folder, photos) -> dict[str, dict]:
    """What the Predictor says for each photo, decoded from the same bytes the server gets."""
    predictor = Predictor.from_export(cls_folder)
    return {name: predictor(Image.open(io.BytesIO(data))).to_dict() for name, data in photos.items()}


def bad_payloads(photos: dict[str, bytes]) -> list[tuple[int, object]]:
    """(expected status, payload) for malformed, oversized and wrong-shape requests."""
    png = photos["chelsea"]
    b64 = base64.b64encode(png).decode()
    return [
        (400, raw_payload("bad", b"this is not an image")),
        (400, raw_payload("bad", png[: len(png) // 3])),  # truncated image
        (400, raw_payload("bad", b"", "image/png")),
        (413, raw_payload("bad", b"\0" * (MAX_BYTES + 1))),
        (413, json_payload("bad", b"\1" * MAX_BYTES)),  # base64 makes it bigger than the limit
        (400, Payload("bad", {"json": {"image": "%%% not base64 %%%"}})),
        (400, raw_payload("bad", b'{"image": ', "application/json")),
        (415, raw_payload("bad", png, "text/plain")),
        (422, json_payload("bad", png, points=[[10, 10]])),  # a prompt for a classifier
        (422, json_payload("bad", png, top_k=0)),
        (422, json_payload("bad", png, unknown=1)),
        (422, raw_payload("bad", png, "image/png", top_k="many")),
        (422, multipart_payload("bad", png, {"points": [[1, 2, 3]]})),
        (400, Payload("bad", {"files": {"image": ("x.png", png)}, "data": {"options": "{not json"}})),
        (422, Payload("bad", {"json": {"top_k": 3}})),  # no image
        (422, Payload("bad", {"json": {"image": b64, "top_k": [3]}})),
    ]


def metric_samples(url: str) -> dict[tuple, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict[tuple, float], name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in samples.items() if n == name and labels.items() <= dict(lab).items())


def test_load_200_requests_at_concurrency_16_with_faults_mid_load(cls_folder, photos, expected):
    names = list(photos)
    makers = [lambda n: raw_payload(n, photos[n], "image/jpeg" if photos[n][:2] == b"\xff\xd8" else "image/png"),
              lambda n: json_payload(n, photos[n]), lambda n: multipart_payload(n, photos[n])]
    good = [makers[i % 3](names[i % 4]) for i in range(200)]
    bad = bad_payloads(photos)
    step = len(good) // len(bad)
    slots = {j * step + step // 2: b for j, b in enumerate(bad)}  # a bad payload every `step` good ones
    payloads, statuses = [], []
    for i, p in enumerate(good):
        payloads.append(p)
        statuses.append(200)
        if i in slots:
            statuses.append(slots[i][0])
            payloads.append(slots[i][1])
    assert statuses.count(200) == 200 and len(statuses) == 200 + len(bad)

    with ServerProcess(cls_folder, max_batch=8, max_wait_ms=10, max_bytes=MAX_BYTES) as server:
        before = metric_samples(server.url)
        started = time.monotonic()
        result = run_load(server.url, payloads, concurrency=16, timeout=120)
        assert time.monotonic() - started < 150
        got = [r.status for r in result.responses]
        assert got == statuses, [(r.status, r.body) for r, s in zip(result.responses, statuses) if r.status != s]
        for r, want in zip(result.responses, statuses):
            if want == 200:
                assert r.body["model"] == "efficientvit-b0-r224"
                exp = expected[r.label]
                assert [t["index"] for t in r.body["top_k"]] == [t["index"] for t in exp["top_k"]]
                assert [t["label"] for t in r.body["top_k"]] == [t["label"] for t in exp["top_k"]]
                np.testing.assert_allclose([t["score"] for t in r.body["top_k"]],
                                           [t["score"] for t in exp["top_k"]], rtol=1e-5, atol=1e-8)
            else:
                assert set(r.body) == {"error", "status"} and r.body["status"] == want and r.body["error"]
        summary = result.summary()
        assert summary["ok"] == 200 and summary["latency_ms"]["p99"] > 0

        # still healthy after the faults, and still correct
        assert httpx.get(f"{server.url}/health", timeout=10).json()["status"] == "ok"
        assert httpx.get(f"{server.url}/ready", timeout=10).status_code == 200
        r = httpx.post(f"{server.url}/v1/predict", content=photos["rocket"], headers={"content-type": "image/png"})
        assert r.status_code == 200 and r.json()["top_k"] == expected["rocket"]["top_k"]

        after = metric_samples(server.url)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        assert total(delta, "evit_requests_total", endpoint="/v1/predict", status="200") == 201
        assert total(delta, "evit_request_errors_total", endpoint="/v1/predict") == len(bad)
        assert total(delta, "evit_request_errors_total", status="413") == 2
        batches, images = total(delta, "evit_batch_size_count"), total(delta, "evit_batch_size_sum")
        assert images == 201 and batches < images  # concurrent requests were batched
        assert total(delta, "evit_request_latency_seconds_count", endpoint="/v1/predict") == 201 + len(bad)
        assert total(after, "evit_requests_in_flight") == 0
        docs = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
        body = docs["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
        assert {"image/*", "application/json", "multipart/form-data"} <= set(body)
        assert httpx.get(f"{server.url}/docs", timeout=10).status_code == 200
        assert server.stop() == 0


def test_graceful_shutdown_drains_in_flight_requests(cls_folder, photos, expected):
    server = ServerProcess(cls_folder, max_batch=64, max_wait_ms=5000)  # requests wait 5 s for a fuller batch
    try:
        url = server.start()
        responses: list[tuple[str, httpx.Response | Exception, float]] = []

        def send(name: str) -> None:
            try:
                r = httpx.post(f"{url}/v1/predict", content=photos[name], headers={"content-type": "image/png"},
                               timeout=60)
            except httpx.HTTPError as exc:
                r = exc
            responses.append((name, r, time.monotonic()))

        threads = [threading.Thread(target=send, args=(n,)) for n in list(photos) * 2]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while total(metric_samples(url), "evit_requests_in_flight") < len(threads):
            assert time.monotonic() < deadline, "requests never got in flight"
            time.sleep(0.05)
        signalled = time.monotonic()
        server.terminate()
        for t in threads:
            t.join(60)
        code = server.proc.wait(60)
        assert code == 0, server.log()[-1500:]
        assert len(responses) == len(threads)
        for name, r, finished in responses:
            assert isinstance(r, httpx.Response) and r.status_code == 200, r
            assert [t["index"] for t in r.json()["top_k"]] == [t["index"] for t in expected[name]["top_k"]]
            assert finished > signalled  # it was in flight when SIGTERM arrived, and it was answered
        assert time.monotonic() - signalled < 30
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=2)
    finally:
        server.close()


# -- in-process: segmentation and SAM responses, readiness --------------------------------------------------
def test_segmentation_response_equals_predictor(photos):
    folder = build_seg_export()[0]
    predictor = Predictor.from_export(folder)
    with TestClient(create_app(predictor=predictor, max_batch=4)) as client:
        r = client.post("/v1/predict", content=photos["coffee"], headers={"content-type": "image/jpeg"})
        assert r.status_code == 200
        body = r.json()
        want = predictor(Image.open(io.BytesIO(photos["coffee"])))
        assert body["size"] == [400, 600] and body["classes"] == want.to_dict()["classes"]
        assert (decode_png(body["label_map"]["data"]) == want.label_map).all()
        assert client.get("/v1/model").json()["task"] == "seg"


def test_sam_prompts_over_http():
    predictor = sam_onnx_predictor()
    b64 = base64.b64encode(encode(sample_photo("coffee"), "PNG")).decode()  # lossless: the cached embedding holds
    with TestClient(create_app(predictor=predictor)) as client:
        r = client.post("/v1/predict", json={"image": b64, "points": [[300, 200], [120, 90]], "point_labels": [1, 0],
                                             "box": [100, 80, 450, 330], "multimask": False})
        assert r.status_code == 200, r.text
        want = predictor.predict_masks([[300, 200], [120, 90]], [1, 0], [100, 80, 450, 330], multimask=False,
                                       image=sam_coffee_image())
        body = r.json()
        assert len(body["masks"]) == 1 and body["masks"][0]["score"] == pytest.approx(float(want.scores[0]), abs=1e-6)
        assert (rle_decode(body["masks"][0]["rle"]) == want.masks[0]).all()
        bad = [
            ({"points": [[1, 2, 3]]}, "points"), ({"points": [[1, 2]], "point_labels": [1, 0]}, "point_labels"),
            ({"points": [[1, 2]], "point_labels": [2]}, "point_labels"), ({"box": [1, 2, 3]}, "box"),
            ({"box": [50, 50, 10, 60]}, "x0 <= x1"), ({}, "needs a prompt"), ({"points": [[900, 10]]}, "inside"),
            ({"top_k": 3}, "does not take top_k"), ({"points": [[1, 2]] * 65}, "points"),
        ]
        for options, message in bad:
            r = client.post("/v1/predict", json={"image": b64, **options})
            assert r.status_code == 422 and message in r.json()["error"], (options, r.text)
        r = client.post("/v1/predict", content=b'{"image": "%s", "points": [[NaN, 1]]}' % b64.encode(),
                        headers={"content-type": "application/json"})
        assert r.status_code in (400, 422)
        assert client.get("/health").status_code == 200


def test_ready_reports_draining_and_oversized_images_are_refused(photos):
    big = encode(np.zeros((300, 400, 3), np.uint8), "PNG")  # small file, 120000 pixels
    app = create_app(build_cls_export()[0], max_pixels=100_000)
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 200
        r = client.post("/v1/predict", content=big, headers={"content-type": "image/png"})
        assert r.status_code == 413 and "pixels" in r.json()["error"]
        app.state.service.draining = True
        assert client.get("/ready").status_code == 503 and client.get("/health").status_code == 200


# -- the dynamic batcher on its own --------------------------------------------------------------------------
def test_batcher_groups_isolates_failures_and_drains():
    seen: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        seen.append(list(items))
        if 13 in items:
            raise ValueError("bad item")
        return [i * 10 for i in items]

    async def scenario() -> None:
        batcher = DynamicBatcher(run, max_batch=4, max_wait_ms=50, max_queue=100)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)), return_exceptions=True)
        assert results == [i * 10 for i in range(10)]
        assert max(len(b) for b in seen) == 4 and len(seen) <= 4
        seen.clear()
        results = await asyncio.gather(*(batcher.submit(i) for i in (11, 12, 13, 14)), return_exceptions=True)
        assert results[:2] == [110, 120] and isinstance(results[2], ValueError) and results[3] == 140
        pending = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
        await asyncio.sleep(0)
        await batcher.close()  # drains what was queued
        assert [p.result() for p in pending] == [0, 10, 20]
        with pytest.raises(Overloaded):
            await batcher.submit(1)

    asyncio.run(scenario())


def test_batcher_refuses_when_the_queue_is_full():
    gate = threading.Event()

    def slow(items: list[int]) -> list[int]:
        gate.wait(10)
        return items

    async def scenario() -> None:
        batcher = DynamicBatcher(slow, max_batch=1, max_wait_ms=0, max_queue=2)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)  # the worker is busy with item 0
        queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="too many"):
            await batcher.submit(3)
        gate.set()
        assert await first == 0 and [await q for q in queued] == [1, 2]
        await batcher.close()

    asyncio.run(scenario())


def test_serve_option_defaults_are_the_serve_settings_defaults():
    from evit_deploy.cli.predict_cmds import serve
    from evit_deploy.cluster.settings import RaySettings
    from evit_deploy.limits import LIMITS
    from evit_deploy.serve import ServeSettings

    engine_options = {"engine", "replicas", "min_replicas", "max_replicas", "target_ongoing_requests", "address"}
    defaults = {p.name: p.default for p in serve.params if p.name not in {"export_dir", *engine_options}}
    assert ServeSettings(**defaults) == ServeSettings()
    ray_defaults = {p.name: p.default for p in serve.params if p.name in engine_options - {"engine"}}
    assert RaySettings(**{**ray_defaults, "replicas": int(ray_defaults["replicas"])}) == RaySettings()
    assert (ServeSettings().max_bytes, ServeSettings().max_pixels) == (LIMITS.max_request_bytes,
                                                                       LIMITS.max_image_pixels)


def test_serve_on_a_busy_port_is_a_one_line_error(cls_folder):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "evit_deploy", "serve", str(cls_folder), "--port", str(port)],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
