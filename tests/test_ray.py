"""Ray engines on one real local Ray cluster (num_cpus=2, loopback clients): ``serve --engine ray`` joined to it
under concurrent load with bad payloads mixed in, a replica killed mid-load, and ``predict --engine ray`` against
the local ``predict``, then a rerun that resumes. The cluster and the Serve app are shared by the tests."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from evit_deploy.errors import EvitError
from evit_deploy.predict import Predictor
from evit_deploy.predict.jobs import OutputFolder, Rendered, outputs
from evit_deploy.samples import sample_photos
from evit_deploy.serve import create_app
from evit_deploy.serve.client import ServerProcess, json_payload, multipart_payload, raw_payload, run_load

from .helpers import run_cli
from .test_server import MAX_BYTES, bad_payloads, encode, metric_samples, total

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module: 2 CPUs, no dashboard; its GCS address."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    formats = {"astronaut": "JPEG", "chelsea": "PNG", "coffee": "JPEG", "rocket": "PNG"}
    return {name: encode(array, formats[name]) for name, array in sample_photos().items()}


def content_type(data: bytes) -> str:
    return "image/jpeg" if data[:2] == b"\xff\xd8" else "image/png"


def replicas() -> set[str]:
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and a["name"].startswith("SERVE_REPLICA::")}


def make_images(folder: Path, count: int = 50) -> None:
    """``count`` different crops of the sample photos, PNG and JPEG."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    arrays = list(sample_photos().values())
    for i in range(count):
        a = arrays[i % len(arrays)]
        h, w = (int(v) for v in rng.integers(48, 160, size=2))
        y, x = int(rng.integers(0, a.shape[0] - h)), int(rng.integers(0, a.shape[1] - w))
        Image.fromarray(a[y : y + h, x : x + w]).save(folder / f"img{i:02d}.{'jpg' if i % 2 else 'png'}")


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_batch_prediction_equals_predict_and_a_rerun_resumes(cluster, cls_export, tmp_path, capsys):
    images = tmp_path / "images"
    make_images(images)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert run_cli(["predict", str(cls_export[0]), str(images), "-o", str(local)]) == 0
    args = ["predict", str(cls_export[0]), str(images), "-o", str(on_ray), "--engine", "ray", "--concurrency", "2"]
    capsys.readouterr()
    assert run_cli(args) == 0
    assert "wrote 50 result(s)" in capsys.readouterr().err

    want, got = files_of(local), files_of(on_ray)
    assert len(want) == 51 and set(got) == set(want) | {"predictions.jsonl"}
    for name in want:
        assert got[name] == want[name], name  # byte for byte: every <image>.json and predictions.json
    table = [json.loads(line) for line in got["predictions.jsonl"].decode().splitlines()]
    assert table == json.loads(want["predictions.json"])

    # a rerun after a run stopped before its index was written: every image's outputs are complete and
    # recognised as ours from their own records; nothing is read or rewritten, the index is written again
    stamps = {p.name: p.stat().st_mtime_ns for p in on_ray.glob("img*.json")}
    (on_ray / "predictions.json").unlink()
    (on_ray / "predictions.jsonl").unlink()
    assert run_cli(args) == 0
    assert "resuming: 50 of 50 images" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in on_ray.glob("img*.json")} == stamps
    assert files_of(on_ray) == got


def test_an_image_is_done_only_when_its_record_and_every_file_it_names_exist(tmp_path):
    out = OutputFolder(tmp_path)
    record, files = outputs("photos/a.png", "a", Rendered("m", {"task": "seg"}, b"label map", b"overlay"))
    out.write(record, files)
    assert out.done("photos/a.png", "a") == record
    assert out.done("other/a.png", "a") is None  # a record of another input with the same stem
    (tmp_path / "a.png").unlink()  # stopped between the record and the overlay
    assert out.done("photos/a.png", "a") is None
    out.check(["a"])  # the files its record names are ours to overwrite
    (tmp_path / "b.png").write_bytes(b"the user's")
    with pytest.raises(EvitError, match="refusing to overwrite"):
        out.check(["a", "b"])


# -- serving: after the batch job, whose actors need the CPUs the replicas hold ----------------------------------------
@pytest.fixture(scope="module")
def server(cluster, cls_export):
    """`evit-deploy serve EXPORT --engine ray --replicas 2` in a second process, joined to the cluster."""
    extra = ["--engine", "ray", "--address", cluster, "--replicas", "2"]
    with ServerProcess(cls_export[0], max_batch=8, max_wait_ms=10, max_bytes=MAX_BYTES, threads=1,
                       extra=extra) as server:
        yield server
        assert server.stop() == 0, server.log()[-2000:]  # SIGTERM: the app is deleted, in-flight finished


@pytest.fixture(scope="module")
def expected(cls_export, photos) -> dict[str, dict]:
    """The Predictor's answers (1 thread, as each replica runs) for the bytes the server gets."""
    predictor = Predictor.from_export(cls_export[0], threads=1)
    return {n: {"model": predictor.model, **predictor(Image.open(io.BytesIO(d))).to_dict()}
            for n, d in photos.items()}

def test_200_requests_at_concurrency_16_with_bad_payloads_mixed_in(server, cls_export, photos, expected):
    names = list(photos)
    makers = [lambda n: raw_payload(n, photos[n], content_type(photos[n])),
              lambda n: json_payload(n, photos[n]), lambda n: multipart_payload(n, photos[n])]
    good = [makers[i % 3](names[i % 4]) for i in range(200)]
    bad = [p for _, p in bad_payloads(photos)]
    step = len(good) // len(bad)
    payloads = []
    for i, p in enumerate(good):
        payloads.append(p)
        if i % step == step // 2 and i // step < len(bad):
            payloads.append(bad[i // step])
    assert len(payloads) == 200 + len(bad)

    before = metric_samples(server.url)
    result = run_load(server.url, payloads, concurrency=16, timeout=120)
    good_answers = [r for r in result.responses if r.label != "bad"]
    assert [r.status for r in good_answers] == [200] * 200, [r.body for r in good_answers if r.status != 200]
    for r in good_answers:
        assert r.body == expected[r.label]  # identical to the Predictor's answer, every field and score

    # the bad payloads get exactly what the one-machine FastAPI server answers
    with TestClient(create_app(cls_export[0], max_bytes=MAX_BYTES, threads=1)) as local:
        for r, p in zip([r for r in result.responses if r.label == "bad"], bad):
            want = local.post("/v1/predict", **p.kwargs)
            assert 400 <= want.status_code < 500
            assert (r.status, r.body) == (want.status_code, want.json())

    assert httpx.get(f"{server.url}/health", timeout=10).json()["status"] == "ok"
    assert httpx.get(f"{server.url}/ready", timeout=10).status_code == 200
    model = httpx.get(f"{server.url}/v1/model", timeout=10).json()
    assert model["model"] == "efficientvit-b0-r224" and model["max_batch"] == 8
    after = metric_samples(server.url)  # one replica's registry: its share of the load
    assert total(after, "evit_batch_size_sum") > total(before, "evit_batch_size_sum")

def test_a_replica_killed_mid_load_is_replaced(server, photos, expected):
    names = list(photos)
    payloads = [raw_payload(names[i % 4], photos[names[i % 4]], content_type(photos[names[i % 4]]))
                for i in range(120)]
    first = replicas()
    assert len(first) == 2
    victim = sorted(first)[0]
    done, killed_at = [], []

    def kill_after_30(response) -> None:  # noqa: ANN001
        done.append(response)
        if len(done) == 30:
            ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
            killed_at.append(time.perf_counter())

    result = run_load(server.url, payloads, concurrency=16, timeout=120, retries=3, on_response=kill_after_30)
    summary = result.summary()
    assert killed_at and sum(r.finished > killed_at[0] for r in result.responses) >= 80  # killed mid-load
    assert summary["ok"] == 120 and summary["errors"] == 0, summary  # every request answered in the end
    assert summary["retried"] <= 16, summary  # at most the requests in flight when the replica died
    print(f"replica killed mid-load: {summary['retried']} of 120 requests retried, 0 failed")
    for r in result.responses:
        assert r.body == expected[r.label]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (len(replicas()) != 2 or victim in replicas()):
        time.sleep(0.5)
    now = replicas()
    assert len(now) == 2 and victim not in now  # Ray Serve started a replacement
    r = httpx.post(f"{server.url}/v1/predict", content=photos["rocket"], headers={"content-type": "image/png"},
                   timeout=30)
    assert r.status_code == 200 and r.json() == expected["rocket"]


