"""The install files agree, and the command line lists exactly what exists.

pyproject.toml declares ranges (what the code needs); constraints.txt pins the one set of
versions the lab was tested with, and make install / CI / environment.yml install that set.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there, the same parser
    import tomli as tomllib

from course_utils.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
TESTED_TORCH = {"torch": "2.14.1", "torchvision": "0.29.1"}


def _pyproject(root: Path = ROOT) -> dict:
    return tomllib.loads((root / "pyproject.toml").read_text())


def _declared(root: Path = ROOT) -> list[Requirement]:
    """Every requirement pyproject.toml declares: the core dependencies and every extra's."""
    project = _pyproject(root)["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return [Requirement(line) for line in lines]


def _constraints(root: Path = ROOT) -> dict[str, Version]:
    """constraints.txt as {name: pinned version}; each line must pin exactly one version, once."""
    pins: dict[str, Version] = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, \
            f"constraints.txt: {line!r} does not pin one exact version"
        name = canonicalize_name(req.name)
        assert name not in pins, f"constraints.txt pins {name} twice"
        pins[name] = Version(specs[0].version)
    return pins


def _check_constraints_match_ranges(root: Path = ROOT) -> None:
    declared, pins = _declared(root), _constraints(root)
    names = [canonicalize_name(r.name) for r in declared]
    assert len(names) == len(set(names)), f"pyproject.toml declares a dependency twice: {sorted(names)}"
    assert set(pins) == set(names), (f"constraints.txt must pin every dependency pyproject.toml declares and "
                                     f"nothing else; missing {sorted(set(names) - set(pins))}, "
                                     f"extra {sorted(set(pins) - set(names))}")
    for req in declared:
        pinned = pins[canonicalize_name(req.name)]
        assert req.specifier.contains(pinned, prereleases=True), \
            f"constraints.txt pins {req.name}=={pinned}, outside pyproject.toml's {req}"
        assert not any(s.operator in ("==", "===") for s in req.specifier), \
            f"pyproject.toml pins {req}; pins belong in constraints.txt, so that `pip install .` keeps a torch it can use"
        assert any(s.operator == ">=" for s in req.specifier), \
            f"pyproject.toml: {req} has no lower bound (name the oldest version whose API the code uses)"


def _check_environment_yml(root: Path = ROOT) -> None:
    env = yaml.safe_load((root / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section
    assert "-c constraints.txt" in pip_section, "environment.yml must install the tested set from constraints.txt"
    pins = _constraints(root)
    for line in pip_section:
        if line.startswith("-"):
            continue
        req = Requirement(line)  # a version named here too must be the tested one
        pinned = pins.get(canonicalize_name(req.name))
        assert pinned is not None and req.specifier.contains(pinned, prereleases=True), \
            f"environment.yml names {line!r}; constraints.txt pins {req.name}=={pinned}"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and re.fullmatch(r"python[=<>]=?[\d.]+", d))
    version = re.search(r"[\d.]+", python).group()
    requires = _pyproject(root)["project"]["requires-python"]
    assert Version(version) in SpecifierSet(requires), \
        f"environment.yml's {python} is outside requires-python {requires}"


def test_constraints_pin_every_declared_dependency_inside_its_range():
    _check_constraints_match_ranges()


def test_environment_yml_installs_the_tested_versions():
    _check_environment_yml()


def test_the_lab_was_tested_with_torch_2_14_1_and_torchvision_0_29_1():
    pins = _constraints()
    assert {name: str(pins[name]) for name in TESTED_TORCH} == TESTED_TORCH


def test_make_install_installs_the_tested_versions():
    makefile = (ROOT / "Makefile").read_text()
    rule = re.search(r"^\$\(STAMP\):(.*)\n((?:\t.*\n)+)", makefile, re.M)
    assert rule, "the Makefile has no $(STAMP) rule"
    prerequisites, recipe = rule.group(1).split(), rule.group(2)
    assert {"pyproject.toml", "constraints.txt"} <= set(prerequisites), "editing either file must reinstall"
    assert re.search(r"pip install .*-c constraints\.txt .*-e '\.\[test,cluster\]'", recipe)


@pytest.mark.parametrize("edit, message", [
    (("constraints.txt", "torch==2.14.1", "torch==2.2.0"), "outside pyproject.toml's torch>="),
    (("constraints.txt", "timm==1.0.31\n", ""), "missing ['timm']"),
    (("constraints.txt", "kornia==0.9.0", "kornia==0.9.0\nkornia==0.9.0"), "pins kornia twice"),
    (("constraints.txt", "tqdm==4.70.1", "tqdm>=4.70"), "does not pin one exact version"),
    (("constraints.txt", "pytest==9.2.0", "pytest==9.2.0\nrequests==2.32.0"), "extra ['requests']"),
    (("pyproject.toml", '"scikit-learn>=1.0"', '"scikit-learn==1.9.1"'), "pins scikit-learn==1.9.1"),
    (("pyproject.toml", '"matplotlib>=3.4"', '"matplotlib"'), "has no lower bound"),
])
def test_the_constraints_check_catches_drift(tmp_path, edit, message):
    """The checks above fail on a copy of the files that someone let drift."""
    for name in ("pyproject.toml", "constraints.txt", "environment.yml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    _check_constraints_match_ranges(tmp_path)  # the copy starts out consistent
    name, old, new = edit
    text = (tmp_path / name).read_text()
    assert old in text, f"{name} no longer contains {old!r}: update this test"
    (tmp_path / name).write_text(text.replace(old, new, 1))
    with pytest.raises(AssertionError, match=re.escape(message)):
        _check_constraints_match_ranges(tmp_path)


@pytest.mark.parametrize("old, new, message", [
    ("- -c constraints.txt\n", "", "must install the tested set"),
    ("- -c constraints.txt", "- -c constraints.txt\n      - torch==2.13.0", "names 'torch==2.13.0'"),
    ("python=3.11", "python=3.9", "outside requires-python"),
])
def test_the_environment_check_catches_drift(tmp_path, old, new, message):
    for name in ("pyproject.toml", "constraints.txt", "environment.yml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    _check_environment_yml(tmp_path)
    text = (tmp_path / "environment.yml").read_text()
    assert old in text, f"environment.yml no longer contains {old!r}: update this test"
    (tmp_path / "environment.yml").write_text(text.replace(old, new, 1))
    with pytest.raises(AssertionError, match=re.escape(message)):
        _check_environment_yml(tmp_path)


def test_cli_help_lists_the_subcommands_that_exist():
    out = subprocess.run([sys.executable, "-m", "course_utils.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    subcommands = set(build_parser()._subparsers._group_actions[0].choices)
    assert {"run", "release", "fetch-data"} <= subcommands
    for name in subcommands:
        assert name in out


def test_importing_the_package_is_cheap_and_downloads_nothing():
    code = "import sys, course_utils; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_wheel_for_students_leaves_out_the_hidden_checks():
    from setuptools import find_packages

    config = _pyproject()["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(where=str(ROOT), include=config["include"], exclude=config["exclude"])
    assert "course_utils" in packages and "course_utils.grading" in packages
    assert not any(p.startswith("course_utils.checks") for p in packages)


def test_the_students_wheel_is_built_clean_and_checked(tmp_path):
    """`course-lab release` builds the wheel from a clean copy: a stale build/lib with the hidden checks (as
    `pip wheel .` once packed) cannot reach it, and a wheel that holds checks or solutions is refused."""
    import zipfile

    from course_utils.student_wheel import UnsafeWheel, build_wheel, check_wheel

    stale = ROOT / "build" / "lib" / "course_utils" / "checks"
    made = not stale.exists()
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "leftover_check.py").write_text("EXPECTED = 42\n")
    try:
        wheel = build_wheel(ROOT, tmp_path / "dist")
    finally:
        (stale / "leftover_check.py").unlink()
        if made:
            stale.rmdir()
    names = check_wheel(wheel)
    assert "course_utils/grading/autograde.py" in names and "course_utils/cli.py" in names
    assert not [n for n in names if "checks" in n.split("/")[1:2] or n.endswith(".ipynb")]
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("course_utils/checks/getting_started.py", "def check_batch_accuracy(f): ...\n")
        dst.writestr("course_utils/answers.json", '{"a": "### BEGIN SOLUTION"}')
    with pytest.raises(UnsafeWheel, match="checks/getting_started.py, course_utils/answers.json"):
        check_wheel(bad)
