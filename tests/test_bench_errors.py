"""Bad input to a bench script or the CLI ends in one sentence on stderr and exit status 1, never a traceback."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from sonoshift.errors import SonoshiftError, exit_on_error

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_exit_on_error_turns_a_sonoshift_error_into_one_line_and_status_1(capsys):
    def bad() -> None:
        raise SonoshiftError("data folder /x is missing.")

    with pytest.raises(SystemExit) as e:
        exit_on_error(bad)
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err == "error: data folder /x is missing.\n"


def test_exit_on_error_lets_other_exceptions_through_and_runs_good_mains():
    ran = []
    exit_on_error(lambda: ran.append(1))
    assert ran == [1]
    with pytest.raises(ZeroDivisionError):
        exit_on_error(lambda: 1 / 0)


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_every_bench_script_runs_its_main_through_exit_on_error(script):
    tree = ast.parse((BENCH / script).read_text())
    guard = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
    assert guard, f"{script} has no __main__ guard"
    calls = [ast.unparse(c) for c in ast.walk(guard[0]) if isinstance(c, ast.Call)]
    assert "exit_on_error(main)" in calls, f"{script} calls {calls}"


def test_a_bench_script_given_a_missing_data_folder_says_so_in_one_line(tmp_path):
    missing = tmp_path / "no_such_dataset"
    out = subprocess.run([sys.executable, str(BENCH / "difusal_downstream.py"), "--data", str(missing),
                          "-c", str(BENCH.parent / "configs" / "cpu" / "difusal.yaml")],
                         capture_output=True, text=True, cwd=BENCH.parent)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0]
    assert out.stdout == ""  # nothing half-printed before the error
