from __future__ import annotations

import subprocess
import sys

import sonoshift


def test_version_console_script_and_module() -> None:
    out = subprocess.run([sys.executable, "-m", "sonoshift", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"sonoshift {sonoshift.__version__}"
