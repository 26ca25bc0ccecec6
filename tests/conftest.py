"""Session-wide test setup: a private cache folder, and the shared exports as session-scoped fixtures."""

from __future__ import annotations

import pytest

from evit_deploy.predict import Predictor

from .shared_exports import build_cls_export, build_sam_export, build_seg_export


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
