"""Session-wide test setup: the test tiers, a private cache folder, and the shared exports as session-scoped
fixtures.

Tiers (markers declared in pyproject.toml): ``integration`` — the file runs real servers, worker processes or the
vendors' tools end to end; ``slow`` — the file's or the test's exports and conversions take many seconds on 2 cores.
``make test`` (and CI) runs every tier; ``make test-fast`` leaves both out for the edit loop."""

from __future__ import annotations

import os
import shutil

import pytest

from evit_deploy.export.conversion_cache import ENV as CONVERSION_CACHE_ENV
from evit_deploy.predict import Predictor

from .shared_exports import SHARED_ENV, build_cls_export, build_sam_export, build_seg_export, make_session_root

# Files whose every test is in a tier (a test elsewhere carries its own @pytest.mark.slow).
FILE_TIERS = {
    "test_triton_server.py": "integration", "test_ray.py": "integration", "test_server.py": "integration",
    "test_bench.py": "integration", "test_bench_scripts.py": "integration", "test_optimize.py": "integration",
    "test_video.py": "integration", "test_device.py": "integration", "test_signing.py": "integration",
    "test_tflite.py": "slow", "test_tflite_tasks.py": "slow", "test_compare.py": "slow",
    "test_compare_sam.py": "slow", "test_compare_written.py": "slow", "test_int8.py": "slow",
    "test_tensorrt.py": "slow",
}
SLOW_FIXTURES = ("sam_export", "sam_case")  # a SAM model exported or run end to end: about 30 s each
# The files that take longest (seconds on 2 cores, 2 workers; measured 2026-12-07), run first so that the short
# files fill the end and both workers finish together (``make test`` passes --no-loadscope-reorder: xdist would
# otherwise order files by their number of tests, and the two-test TFLite file would run last, alone).
HEAVIEST_FIRST = (
    "test_bench.py", "test_tflite_tasks.py", "test_tflite.py", "test_ray.py", "test_optimize.py", "test_cli.py",
    "test_triton_server.py", "test_video.py", "test_compare.py", "test_int8.py", "test_predictor.py",
    "test_signing.py", "test_device.py", "test_export.py", "test_sam_decoder_onnx.py", "test_compare_written.py",
    "test_export_folder.py", "test_eval.py", "test_zoo.py", "test_openvino.py", "test_models.py", "test_server.py",
    "test_compare_sam.py", "test_fp16.py", "test_tensorrt.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """The controller (or a run without workers) makes the session's shared-export folder; workers inherit it.
    With several workers, each one's PyTorch (and OpenMP) gets one thread: two workers of two threads each on two
    cores fight for them (measured: 141 s → 101 s for four export files, a third less CPU time). Tests that time or
    check threads set them explicitly."""
    if hasattr(config, "workerinput"):  # a worker: it inherited all of this from the controller
        return
    workers = getattr(config.option, "numprocesses", None)
    if isinstance(workers, int) and workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    if not os.environ.get(SHARED_ENV):
        config._evit_shared = make_session_root()  # type: ignore[attr-defined]
        os.environ[SHARED_ENV] = str(config._evit_shared)  # type: ignore[attr-defined]
        # one litert-torch conversion per graph for the whole session (the demo, bench and optimize tests export
        # the same B0 at 224): the product's own cross-process conversion cache, in the session's folder
        os.environ.setdefault(CONVERSION_CACHE_ENV, str(config._evit_shared / "conversions"))  # type: ignore


def pytest_unconfigure(config: pytest.Config) -> None:
    root = getattr(config, "_evit_shared", None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
        os.environ.pop(SHARED_ENV, None)
        if os.environ.get(CONVERSION_CACHE_ENV, "").startswith(str(root)):
            os.environ.pop(CONVERSION_CACHE_ENV)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order
    for item in items:
        tier = FILE_TIERS.get(item.path.name)
        if tier:
            item.add_marker(getattr(pytest.mark, tier))
        if any(name in getattr(item, "fixturenames", ()) for name in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Counted params/MACs and other caches go to a folder of this session, never to the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def cls_export():
    """efficientvit-b0-r224, cpu-ort light profile, randomised weights: (folder, checkpoint)."""
    return build_cls_export()


@pytest.fixture(scope="session")
def seg_export():
    """efficientvit-seg-b0-cityscapes at 128x256, cpu-ort light profile: (folder, checkpoint)."""
    return build_seg_export()


@pytest.fixture(scope="session")
def sam_export():
    """efficientvit-sam-l0 at 512, cpu-ort light profile, the zoo's deterministic random weights: folder."""
    return build_sam_export()


@pytest.fixture(scope="session")
def cls_pred(cls_export):
    return Predictor.from_export(cls_export[0])
