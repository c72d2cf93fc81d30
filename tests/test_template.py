"""The prepared template: every hidden check the checker can run has its stub, read from
the source without importing the checks; the digest of what a kernel's sandbox binds from it."""
import importlib
import inspect
from pathlib import Path

import pytest

from course_utils.grading import template

CHECKS = Path(template.__file__).resolve().parents[1] / "checks"
MODULES = sorted(p for p in CHECKS.glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_check_names_from_the_source_are_the_modules_check_functions(path):
    module = importlib.import_module(f"course_utils.checks.{path.stem}")
    imported = sorted(n for n, f in vars(module).items()
                      if n.startswith("check_") and inspect.isfunction(f) and f.__module__ == module.__name__)
    assert imported and template.check_names(path) == imported


def test_check_names_skips_what_is_not_a_top_level_check(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def check_a():\n    def check_inner(): pass\nasync def check_b(): pass\n"
                      "def helper(): pass\nclass check_c: pass\ncheck_d = 1\n")
    assert template.check_names(source) == ["check_a", "check_b"]


def test_the_sites_stubs_name_every_check(tmp_path):
    site = template.build_site(Path(template.__file__).resolve().parents[2], tmp_path / "site")
    for path in MODULES:
        stub = (site / "course_utils" / "checks" / path.name).read_text()
        assert "expected" not in stub
        for name in template.check_names(path):
            assert f'{name} = remote_check("{path.stem}.{name}")' in stub


def test_the_sandbox_digest_follows_the_files_a_sandbox_binds_not_their_compiled_caches(tmp_path):
    """A cluster worker keeps the zygote it started on its own site/ for a TA's template only when
    the sandbox would bind the same files."""
    from course_utils.grading import sandbox

    root = Path(template.__file__).resolve().parents[2]
    for name in ("a", "b"):
        template.build_site(root, tmp_path / name / "site")
        sandbox.write_etc(tmp_path / name / "etc")
    a, b = (template.sandbox_digest(tmp_path / n / "site", tmp_path / n / "etc") for n in ("a", "b"))
    assert a == b
    cache = next((tmp_path / "b" / "site").rglob("__pycache__/*.pyc"))
    cache.write_bytes(b"compiled elsewhere")
    assert template.sandbox_digest(tmp_path / "b" / "site", tmp_path / "b" / "etc") == a
    (tmp_path / "b" / "site" / "course_utils" / "attacks.py").write_text("# another version\n", encoding="utf-8")
    assert template.sandbox_digest(tmp_path / "b" / "site", tmp_path / "b" / "etc") != a
    (tmp_path / "a" / "etc" / "group").write_text("student:x:0:\n")
    assert template.sandbox_digest(tmp_path / "a" / "site", tmp_path / "a" / "etc") != a
