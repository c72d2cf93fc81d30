"""`course-lab lab` (what `make lab` runs): it prints the address and the folder, and the address works."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from course_utils.cli import main
from course_utils.lab_server import free_port, lab_command

ROOT = Path(__file__).resolve().parents[1]


def test_lab_command_serves_the_folder_on_loopback_with_a_token(tmp_path):
    cmd = lab_command(tmp_path, port=8899, token="abc")
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={tmp_path.resolve()}" in cmd
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--ServerApp.port=8899" in cmd
    assert "--IdentityProvider.token=abc" in cmd and "--ServerApp.open_browser=False" in cmd


def test_course_lab_lab_prints_a_working_address_and_the_folder(tmp_path):
    lab = tmp_path / "lab4"
    shutil.copytree(ROOT / "labs" / "lab4", lab)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    proc = subprocess.Popen([sys.executable, "-m", "course_utils.cli", "lab", "--no-browser", "--notebook-dir", str(lab),
                             "--port", str(free_port())], env=env, stdout=subprocess.PIPE,
                            stderr=open(tmp_path / "server.log", "w"), text=True, start_new_session=True)
    try:
        banner = []  # printed once the server answers
        while not banner or "open:" not in banner[-1]:
            banner.append(proc.stdout.readline())
            assert banner[-1] and len(banner) < 10, banner
        assert any(f"notebooks: {lab.resolve()}" in line for line in banner), banner
        url = re.search(r"(http://127\.0\.0\.1:\d+)/lab\?token=(\w+)", banner[-1])
        assert url, banner
        base, token = url.groups()
        with urllib.request.urlopen(f"{base}/api/contents?token={token}", timeout=10) as r:
            listing = json.load(r)
        names = {item["name"] for item in listing["content"]}
        assert {p.name for p in (ROOT / "labs" / "lab4").glob("*.ipynb")} <= names
        with urllib.request.urlopen(url.group(0), timeout=10) as r:
            assert r.status == 200 and "JupyterLab" in r.read().decode()
        proc.terminate()  # stopping the launcher stops its server
        proc.wait(30)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
        errors = [line for line in (tmp_path / "server.log").read_text().splitlines() if line.startswith("[E ")]
        assert not errors, errors  # e.g. nbgrader's "course directory root is not a subdirectory"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # nothing of it may outlive the test
        except ProcessLookupError:
            pass


def test_course_lab_lab_says_when_the_port_is_taken(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["lab", "--notebook-dir", str(tmp_path), "--no-browser", "--port", str(port)]) == 1
    assert "try --port" in capsys.readouterr().err


def test_free_port_prefers_the_usual_one_when_it_is_free():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert free_port(preferred=port) != port
    assert free_port(preferred=port) == port


def test_course_lab_lab_names_a_missing_folder(tmp_path, capsys):
    assert main(["lab", "--notebook-dir", str(tmp_path / "nowhere"), "--no-browser"]) == 1
    assert "nowhere" in capsys.readouterr().err
