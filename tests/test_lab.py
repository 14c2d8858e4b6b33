"""`make lab`: JupyterLab opens a chapter as a notebook, runs it in the inrlib kernel, and its live
explorer answers a control, in headless Chromium (Selenium + Debian's chromium-driver)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import lab  # noqa: E402


def _copy_tracked(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(f"{d.name}: {cmd[:160]}")
    return found


def test_lab_settings_and_command(tmp_path):
    env = lab.prepare(ROOT, tmp_path)
    assert "INRLIB_STATIC_PAGE" not in env and env["INRLIB_RESULTS_BASE"] == str(tmp_path / "results")
    viewer = (tmp_path / "user-settings" / "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings").read_text()
    assert '"python": "Jupytext Notebook"' in viewer
    cmd = lab.server_command(ROOT, tmp_path, 8123, "tok")
    config = (tmp_path / "jupyter_lab_config.json").read_text()
    assert cmd[-1] == f"--config={tmp_path / 'jupyter_lab_config.json'}"
    assert '"ip": "127.0.0.1"' in config and '"port": 8123' in config and '"token": "tok"' in config
    assert str(tmp_path / "checkpoints") in config        # not beside the chapters


def test_lab_refuses_a_busy_port(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(lab.LabError, match="in use"):
            with lab.lab_server(ROOT, port=s.getsockname()[1], state=tmp_path):
                pass


@pytest.mark.browser
def test_theory_runs_in_jupyterlab_and_its_explorer_is_live(tmp_path):
    root = tmp_path / "repo"
    _copy_tracked(root)
    chapter = root / "book" / "theory.py"
    src = chapter.read_text()
    assert 'profile = "quick"' in src
    chapter.write_text(src.replace('profile = "quick"', 'profile = "smoke"', 1))
    before = chapter.read_text()
    state = tmp_path / "lab-state"
    shot = ROOT / "_build" / "screenshots" / "lab-theory.png"
    try:
        server = lab.lab_server(root, expose_app=True, state=state, timeout=180)
        info = server.__enter__()
    except lab.LabError as err:
        pytest.fail(f"server start: {err}")
    try:
        result = lab.check_chapter(info, "book/theory.py", screenshot=shot)
    except lab.LabCheckError as err:
        log = info["log"].read_text(errors="replace")[-2000:]
        pytest.fail(f"JupyterLab step '{err.step}' failed: {err}\n--- server log (end) ---\n{log}")
    finally:
        pid = info["proc"].pid
        server.__exit__(None, None, None)
    print(result)
    assert result["code_cells"] > 10 and len(result["moves"]) == 2
    # saving wrote the py:percent text only: no outputs in the source, no notebook beside it
    after = chapter.read_text()
    assert "data:image/png" not in after and "execution_count" not in after
    assert after == before, "saving the chapter in JupyterLab changed its py:percent source"
    assert not list((root / "book").glob("*.ipynb")), "a .ipynb was written beside the chapters"
    assert (state / "results" / "smoke" / "theory.json").is_file()   # the lab's results, apart from the book's
    assert not (root / "_build" / "results").exists()
    # nothing left running: neither the server nor its kernel (whose connection file is under state/)
    assert info["proc"].poll() is not None
    left = _processes_mentioning(str(state)) + [p for p in _processes_mentioning("jupyterlab") if p.startswith(f"{pid}:")]
    assert not left, f"processes left behind: {left}"


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_lab_state_is_private_even_if_an_older_run_left_it_open(tmp_path):
    state = tmp_path / "lab"
    (state / "runtime").mkdir(parents=True)
    for folder in (state, state / "runtime"):
        folder.chmod(0o755)
    (state / "jupyter_lab_config.json").write_text("{}")
    (state / "jupyter_lab_config.json").chmod(0o644)
    lab.prepare(ROOT, state)
    lab.server_command(ROOT, state, 8123, "secret-token")
    assert _mode(state) == 0o700 and _mode(state / "runtime") == 0o700
    assert _mode(state / "jupyter_lab_config.json") == 0o600
    assert "secret-token" in (state / "jupyter_lab_config.json").read_text()


def test_every_file_and_folder_holding_the_token_is_private_to_its_owner(tmp_path):
    """The token opens a kernel that runs code as you: the config and jupyter's runtime files
    (server info, jpserver-*-open.html) hold it; none may be readable by group or others, nor
    any folder on the way to them; the server's command line (world-readable) does not show it."""
    state = tmp_path / "lab"
    with lab.lab_server(ROOT, state=state, timeout=180) as info:
        token = info["token"]
        holders = [p for p in state.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
        names = {p.name for p in holders}
        assert "jupyter_lab_config.json" in names, names
        assert _mode(state / "server.log") == 0o600     # jupyter masks the token in its log, but it may not
        assert any(n.startswith("jpserver-") and n.endswith("-open.html") for n in names), names
        assert any(n.startswith("jpserver-") and n.endswith(".json") for n in names), names
        for path in holders:
            assert _mode(path) & 0o077 == 0, f"{path} is {oct(_mode(path))}, readable by others"
            for folder in [f for f in path.parents if f == state or state in f.parents]:
                assert _mode(folder) == 0o700, f"{folder} is {oct(_mode(folder))}, not private (0700)"
        cmdline = Path(f"/proc/{info['proc'].pid}/cmdline").read_bytes()
        assert token.encode() not in cmdline
