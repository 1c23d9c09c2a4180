"""The package ships every schema folder, listed so that setuptools does not warn about it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_schema_folder_is_a_listed_package_with_its_avsc_files_as_data() -> None:
    folders = sorted(path.parent.name for path in (ROOT / "schemas").glob("*/v*.avsc"))
    assert folders, "no schema folder found"
    config = _setuptools()
    for folder in set(folders):
        package = f"govbus.schemas.{folder}"
        assert package in config["packages"], f"{package} is missing from [tool.setuptools] packages"
        assert "*.avsc" in config["package-data"].get(package, []), f"{package} does not ship its .avsc files"


def test_every_listed_package_folder_exists() -> None:
    config = _setuptools()
    mapping = config["package-dir"]
    for package in config["packages"]:
        top = next((name for name in sorted(mapping, key=len, reverse=True)
                    if package == name or package.startswith(name + ".")), None)
        assert top is not None, f"{package} has no package-dir mapping"
        folder = ROOT / mapping[top] / Path(*package[len(top):].strip(".").split(".")) if package != top \
            else ROOT / mapping[top]
        assert folder.is_dir(), f"{package} is listed but {folder} does not exist"


def test_every_folder_of_a_package_with_files_is_listed_so_setuptools_ships_it_without_a_warning() -> None:
    """setuptools warns once per folder inside a package that `packages` does not list (it
    still ships its data); a newcomer's first `./run demo` printed about 170 such lines."""
    config = _setuptools()
    unlisted = []
    for top, folder in config["package-dir"].items():
        for directory in sorted((ROOT / folder).rglob("*")):
            if not directory.is_dir() or "__pycache__" in directory.parts or directory.name.endswith(".egg-info"):
                continue
            if not any(path.is_file() for path in directory.iterdir()):
                continue
            package = ".".join([top, *directory.relative_to(ROOT / folder).parts])
            if package not in config["packages"]:
                unlisted.append(package)
    assert unlisted == [], f"folders missing from [tool.setuptools] packages: {unlisted}"
