"""The install files agree, and the command line lists exactly what exists."""
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from course_utils.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _pins(requirements):
    return {r.split("==")[0].lower(): r.split("==")[1] for r in requirements if "==" in r}


def test_environment_yml_names_the_versions_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == _pins(project["dependencies"])
    assert "-e ." in pip_section
    assert "python=3.11" in env["dependencies"]
    assert _pins(project["dependencies"])["torch"] == "2.14.1"
    assert _pins(project["dependencies"])["torchvision"] == "0.29.1"


def test_every_core_dependency_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert all("==" in r for r in project["dependencies"])


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

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(where=str(ROOT), include=config["include"], exclude=config["exclude"])
    assert "course_utils" in packages and "course_utils.grading" in packages
    assert not any(p.startswith("course_utils.checks") for p in packages)
