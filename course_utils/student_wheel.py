"""The students' wheel, built from a clean copy of the package and checked before it is given out.

`pip wheel .` in a working tree packs whatever its `build/lib` holds from earlier builds (a
`course_utils/checks` left there went into a wheel once). So the wheel is built from a fresh
temporary folder holding only what a student's install needs: `pyproject.toml`, the README and
`course_utils/` without the hidden checks. Then the wheel itself is read: no hidden checks, no
solution notebooks, no test code, nothing with nbgrader's solution markers. Offline: the build
uses this environment's setuptools (`--no-build-isolation --no-index`).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

LEFT_OUT = ("checks",)  # course_utils subpackages that stay with the course
MARKERS = ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS")


class UnsafeWheel(RuntimeError):
    """The built wheel holds something students must not get."""


def build_wheel(root: str | Path = ".", dist: str | Path | None = None) -> Path:
    """Build the students' wheel of the package at `root` into `dist` (default `root/dist`), check it
    (`check_wheel`) and return its path."""
    root = Path(root).resolve()
    dist = Path(dist).resolve() if dist else root / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="course-lab-wheel-") as tmp:
        source = Path(tmp) / "src"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(root / name, source / name)
        shutil.copytree(root / "course_utils", source / "course_utils",
                        ignore=lambda folder, names: [n for n in names if n == "__pycache__" or n.endswith(".pyc")
                                                      or (Path(folder).name == "course_utils" and n in LEFT_OUT)])
        out = Path(tmp) / "dist"
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                               "--disable-pip-version-check", "-q", "-w", str(out), str(source)],
                              capture_output=True, text=True)
        wheels = sorted(out.glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise RuntimeError(f"building the students' wheel failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        check_wheel(wheels[0])
        target = dist / wheels[0].name
        shutil.copy(wheels[0], target)
    return target


def check_wheel(path: str | Path) -> list[str]:
    """The wheel's members; `UnsafeWheel` if any is a hidden check, a notebook, a test, or a data file
    with nbgrader's solution or hidden-test markers (the grading code names the markers to parse
    them, so code files are judged by their place, not their text)."""
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        bad = [n for n in names if n.startswith("course_utils/checks") or n.endswith(".ipynb")
               or n.split("/")[0] in ("tests", "solutions", "labs", "benchmarks")]
        bad += [n for n in names if not n.endswith(".py") and ".dist-info/" not in n and n not in bad
                and any(m.encode() in wheel.read(n) for m in MARKERS)]
    if bad:
        raise UnsafeWheel(f"{path} holds what students must not get: {', '.join(bad[:10])}")
    return names
