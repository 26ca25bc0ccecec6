"""The wheel carries every subpackage and the data folders (models, export_profiles, latency)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_for_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "evit_deploy").rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    for data in ("models", "export_profiles", "latency"):
        assert config["package-dir"][f"evit_deploy._data.{data}"] == data


def test_package_data_globs_cover_the_data_files():
    import fnmatch

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for folder in ("models", "export_profiles"):
        globs = config["package-data"][f"evit_deploy._data.{folder}"]
        for path in (ROOT / folder).rglob("*"):
            if path.is_file():
                rel = path.relative_to(ROOT / folder).as_posix()
                assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{folder}/{rel} would be left out of the wheel"
