"""A real Triton Inference Server on repositories `evit-deploy triton` writes (the tritonserver bundled with the
nvidia-pytriton wheel, Python backend, CPU): classification, segmentation and SAM queried with tritonclient over
HTTP and gRPC and compared with the Predictor, dynamic batching read from Triton's metrics, bad inputs, and the
command line's `--serve` (one-line errors, clean stop, a stop during the load). One server serves the whole
module; the command-line tests start their own.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evit_deploy.errors import EvitError
from evit_deploy.images import open_image
from evit_deploy.predict import Predictor
from evit_deploy.samples import sample_photo
from evit_deploy.triton import write_repository
from evit_deploy.triton.server import ServerSettings, TritonServer, check_stub_numpy, find_install, stub_site

from .helpers import run_cli


def _missing() -> str | None:
    """Why a real Triton server cannot run here, or None."""
    try:
        install = find_install()
        if install.bundled:
            check_stub_numpy(stub_site())
        import tritonclient.grpc  # noqa: F401
        import tritonclient.http  # noqa: F401
    except (EvitError, ImportError) as exc:
        return f"no Triton server to run here: {exc}"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))
FREE_PORTS = ServerSettings(http_port=0, grpc_port=0, metrics_port=0, exit_timeout=10)
SAM_POINT = {"points": [[300, 200]], "point_labels": [1], "multimask": True}
SAM_BOX = {"box": [100, 80, 450, 330], "multimask": False}


def png(name: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(sample_photo(name)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Served:
    server: TritonServer
    repo: Path
    models: dict[str, str]  # task → pipeline model name
    folders: dict[str, Path]  # task → export folder


def processes_using(path: Path) -> list[int]:
    """Processes whose command line names ``path`` (the server and its Python-backend stubs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(path).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory, cls_export, seg_export, sam_export):
    repo = tmp_path_factory.mktemp("triton") / "repo"
    install = find_install()
    folders = {"cls": cls_export[0], "seg": seg_export[0], "sam": sam_export}
    models = {}
    for task, folder in folders.items():  # a long queue delay so that concurrent requests surely meet
        models[task] = write_repository(folder, repo, backends=install.backends, max_queue_delay_us=200_000)[0].name
    (repo / "not-ours").mkdir()  # a folder the server must not load (only the models we name are loaded)
    (repo / "not-ours" / "config.pbtxt").write_text("this is not a model config")
    names = [p.name for p in repo.iterdir() if p.name != "not-ours"]
    server = TritonServer(install, repo, names, FREE_PORTS).start()
    yield Served(server, repo, models, folders)
    server.stop()


@pytest.fixture(scope="module")
def predictors(served):
    return {task: Predictor.from_export(folder) for task, folder in served.folders.items()}


def close(a: object, b: object, path: str = "") -> None:
    """Equal JSON, floats within 1e-6."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-6), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def infer(protocol: str, served: Served, task: str, image: bytes, options: dict | None = None) -> dict:
    """One request through tritonclient (``http`` or ``grpc``); the parsed RESULT."""
    if protocol == "http":
        import tritonclient.http as client_module

        client = client_module.InferenceServerClient(served.server.http_url.removeprefix("http://"))
    else:
        import tritonclient.grpc as client_module

        client = client_module.InferenceServerClient(served.server.grpc_url)
    try:
        inputs = [client_module.InferInput("IMAGE", [1, 1], "BYTES")]
        inputs[0].set_data_from_numpy(np.array([[image]], dtype=object))
        if options is not None:
            inputs.append(client_module.InferInput("OPTIONS", [1, 1], "BYTES"))
            inputs[1].set_data_from_numpy(np.array([[json.dumps(options).encode()]], dtype=object))
        result = client.infer(served.models[task], inputs).as_numpy("RESULT")
        assert result.shape == (1, 1)
        return json.loads(result[0, 0])
    finally:
        client.close()


def expected(predictors: dict, served: Served, task: str, image: bytes, options: dict | None = None) -> dict:
    predictor = predictors[task]
    result = predictor.predict(open_image(image), **(options or {})).to_dict()
    return {"model": predictor.model, **result}


@pytest.mark.parametrize(("protocol", "task", "photo", "options"), [
    ("http", "cls", "coffee", {"top_k": 3}), ("grpc", "cls", "chelsea", None),
    ("http", "seg", "astronaut", None), ("grpc", "seg", "rocket", None),
    ("http", "sam", "coffee", SAM_POINT), ("grpc", "sam", "coffee", SAM_BOX),
])
def test_answers_equal_the_predictor(served, predictors, protocol, task, photo, options):
    image = png(photo)
    got = infer(protocol, served, task, image, options)
    close(got, expected(predictors, served, task, image, options))
    if task == "sam":
        assert got["prompt"].get("box" if "box" in options else "points") is not None


def metric(served: Served, name: str, model: str) -> float:
    text = urllib.request.urlopen(served.server.metrics_url, timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_dynamic_batching_seen_in_the_metrics(served, predictors):
    """16 concurrent requests: Triton runs the pipeline and its graph model fewer times than it has requests."""
    pipeline, graph = served.models["cls"], f"{served.models['cls']}-model"
    before = {(n, m): metric(served, n, m) for n in ("nv_inference_count", "nv_inference_exec_count")
              for m in (pipeline, graph)}
    photos = ["coffee", "chelsea", "astronaut", "rocket"]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: infer("http", served, "cls", png(photos[i % 4])), range(16)))
    for i, got in enumerate(answers):
        want = expected(predictors, served, "cls", png(photos[i % 4]))
        assert [t["index"] for t in got["top_k"]] == [t["index"] for t in want["top_k"]]
        np.testing.assert_allclose([t["score"] for t in got["top_k"]], [t["score"] for t in want["top_k"]],
                                   atol=1e-5)
    delta = {k: metric(served, *k) - v for k, v in before.items()}
    for model in (pipeline, graph):
        assert delta[("nv_inference_count", model)] == 16, model
        assert 1 <= delta[("nv_inference_exec_count", model)] < 16, (model, delta)


def health(served: Served) -> bool:
    return served.server.ready() and served.server.running()


@pytest.mark.parametrize(("task", "image", "options", "message"), [
    ("cls", b"not an image", None, "image"),
    ("cls", None, {"top_k": "many"}, "top_k"),
    ("cls", None, "{not json", "JSON"),
    ("sam", None, {"points": [[1, 2, 3]]}, "points"),
    ("sam", None, None, "prompt"),
])
def test_bad_inputs_are_answered_with_an_error(served, task, image, options, message):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(served.server.http_url.removeprefix("http://"))
    try:
        inputs = [httpclient.InferInput("IMAGE", [1, 1], "BYTES")]
        inputs[0].set_data_from_numpy(np.array([[image or png("coffee")]], dtype=object))
        if options is not None:
            text = options if isinstance(options, str) else json.dumps(options)
            inputs.append(httpclient.InferInput("OPTIONS", [1, 1], "BYTES"))
            inputs[1].set_data_from_numpy(np.array([[text.encode()]], dtype=object))
        with pytest.raises(InferenceServerException) as caught:
            client.infer(served.models[task], inputs)
        assert message.lower() in str(caught.value).lower()
    finally:
        client.close()
    assert health(served)
    assert infer("http", served, "cls", png("coffee"))["task"] == "cls"  # still answering


def test_only_our_models_are_loaded(served):
    index = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"{served.server.http_url}/v2/repository/index", data=b"{}", method="POST"), timeout=10).read())
    states = {m["name"]: m.get("state") for m in index}
    assert states.get("not-ours") != "READY"
    assert all(states[m] == "READY" for m in served.models.values())


def test_a_model_that_fails_to_load_is_named_with_the_log_line(tmp_path, cls_export):
    """A graph whose bytes no longer match export.json's sha256 is refused by its model's initialize: the error
    is Triton's log line for that model, not a timeout, and nothing is left running."""
    repo = tmp_path / "repo"
    install = find_install()
    models = write_repository(cls_export[0], repo, backends=install.backends)
    graph = next(repo.glob("*-model/1/model.onnx"))
    graph.write_bytes(graph.read_bytes()[:-16] + bytes(16))
    server = TritonServer(install, repo, [m.name for m in models], FREE_PORTS)
    with pytest.raises(EvitError, match=r"failed to load '.*-model'.*sha256"):
        server.start()
    assert not server.running() and processes_using(repo) == []


# -- the command line ---------------------------------------------------------------------------------------
def test_cli_refusals(tmp_path, cls_export, capsys, monkeypatch):
    folder = str(cls_export[0])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert run_cli(["triton", folder, "--repo", str(tmp_path / "r"), "--serve", "--http-port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "--http-port" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # refused before anything was written

    (tmp_path / "r2" / "efficientvit-b0-r224").mkdir(parents=True)
    (tmp_path / "r2" / "efficientvit-b0-r224" / "mine.txt").write_text("keep me")
    serve = ["--serve", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
    assert run_cli(["triton", folder, "--repo", str(tmp_path / "r2"), *serve]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert run_cli(["triton", folder, "--repo", str(tmp_path / "r2"), *serve, "--force"]) == 2
    assert "not written by evit-deploy triton" in capsys.readouterr().err
    assert (tmp_path / "r2" / "efficientvit-b0-r224" / "mine.txt").read_text() == "keep me"

    assert run_cli(["triton", folder, "--repo", str(tmp_path / "r3"), "--http-port", "0"]) == 2
    assert "only apply with --serve" in capsys.readouterr().err

    import evit_deploy.triton.server as server_module

    monkeypatch.setattr(server_module, "BUNDLED_PACKAGE", "no_such_package_here")
    monkeypatch.setenv("PATH", str(tmp_path))  # no tritonserver on it
    assert run_cli(["triton", folder, "--repo", str(tmp_path / "r4"), "--serve"]) == 2
    err = capsys.readouterr().err
    assert "[triton] extra" in err and "nvidia-pytriton" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r4").exists()


def start_cli(folder: Path, repo: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "evit_deploy", "triton", str(folder), "--repo", str(repo),
                             "--serve", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def serving(proc: subprocess.Popen) -> tuple[str, list[str]]:
    """Read the command's stderr up to its ``serving`` line: (the HTTP address, the lines read)."""
    lines: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("serving"):
            return line.split("HTTP ")[1].split(",")[0], lines
    raise AssertionError("".join(lines))


class BackgroundLoad:
    """WORKERS threads sending the coffee photo in a loop until :meth:`finish`; each outcome is (ok, answer or
    error, when it ended)."""

    def __init__(self, http: str, model: str, workers: int = 8) -> None:
        import threading

        self.http, self.model, self.done = http.removeprefix("http://"), model, threading.Event()
        self.image = png("coffee")
        self.outcomes: list[tuple[bool, object, float]] = []
        self.pool = ThreadPoolExecutor(workers)
        self.futures = [self.pool.submit(self._loop) for _ in range(workers)]

    def _loop(self) -> None:
        import tritonclient.http as httpclient

        while not self.done.is_set():
            client = httpclient.InferenceServerClient(self.http, network_timeout=120)
            try:
                image = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
                image.set_data_from_numpy(np.array([[self.image]], dtype=object))
                answer = json.loads(client.infer(self.model, [image]).as_numpy("RESULT")[0, 0])
                self.outcomes.append((True, answer, time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - refused or cut off by the stop
                self.outcomes.append((False, exc, time.monotonic()))
                time.sleep(0.2)
            finally:
                client.close()

    def finish(self) -> list[tuple[bool, object, float]]:
        self.done.set()
        for f in self.futures:
            f.result(timeout=180)  # every worker ends: no request hangs
        self.pool.shutdown()
        return self.outcomes


def test_cli_stops_on_sigterm_under_load(tmp_path, cls_export):
    """SIGTERM while requests are in flight: they are answered (Triton drains them), the command exits 0,
    nothing is left running and the repository stays whole."""
    repo = tmp_path / "repo"
    proc = start_cli(cls_export[0], repo, "--exit-timeout", "20")
    try:
        http, lines = serving(proc)
        assert http.startswith("http://127.0.0.1:")
        assert urllib.request.urlopen(f"{http}/v2/health/ready", timeout=10).status == 200
        load = BackgroundLoad(http, "efficientvit-b0-r224")
        wait_for(lambda: any(ok for ok, _, _ in load.outcomes), timeout=120)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=90)[1]
        outcomes = load.finish()
    finally:
        proc.kill()
    assert proc.returncode == 0, "".join(lines) + rest
    assert "Triton stopped (exit 0)" in rest
    answered = [a for ok, a, _ in outcomes if ok]
    assert all(a["task"] == "cls" and len(a["top_k"]) == 5 for a in answered)
    assert any(ok and ended > signalled for ok, _, ended in outcomes), "no request in flight was drained"
    assert processes_using(repo) == []
    assert sorted(p.name for p in repo.iterdir()) == ["efficientvit-b0-r224", "efficientvit-b0-r224-model"]
    assert all((repo / m / "config.pbtxt").is_file() for m in ("efficientvit-b0-r224", "efficientvit-b0-r224-model"))


def test_cli_killed_under_load_leaves_no_process(tmp_path, cls_export):
    """SIGKILL of the command mid-load: the server dies with it (PR_SET_PDEATHSIG) and its Python-backend stubs
    follow; the repository, written before the server started, is whole."""
    repo = tmp_path / "repo"
    proc = start_cli(cls_export[0], repo)
    try:
        http, _ = serving(proc)
        load = BackgroundLoad(http, "efficientvit-b0-r224")
        wait_for(lambda: any(ok for ok, _, _ in load.outcomes), timeout=120)
        proc.kill()
        proc.wait(30)
        wait_for(lambda: processes_using(repo) == [], timeout=30)
        load.finish()  # every request answered or cut off, none hangs
    finally:
        proc.kill()
    assert (repo / "efficientvit-b0-r224" / "1" / "pipeline.json").is_file()
    assert not list(repo.glob(".*.tmp-*"))


def test_cli_stopped_during_the_load_leaves_nothing(tmp_path, cls_export):
    """SIGTERM while the server loads the models: no process and no repository are left behind."""
    repo = tmp_path / "repo"
    proc = start_cli(cls_export[0], repo)
    try:
        wait_for(lambda: any(b"triton_python_backend_stub" in Path(f"/proc/{p}/cmdline").read_bytes()
                             for p in processes_using(repo)) or proc.poll() is not None)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated by SIGTERM" in err and "Traceback" not in err
    assert processes_using(repo) == []
    assert not repo.exists()
    leftovers = [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob(f".evit-triton.tmp-{proc.pid}-*")]
    assert leftovers == []


def test_the_server_stops_with_nothing_left(served):
    """Last test of the module: the shared server stops on SIGTERM and leaves no process."""
    assert processes_using(served.repo) != []
    served.server.stop()
    assert not served.server.running()
    wait_for(lambda: processes_using(served.repo) == [], timeout=20)
