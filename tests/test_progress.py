"""Progress bars: a finished bar leaves its final line on a non-terminal stderr; a bar ended by an error (or a
loop stopped early) leaves none, so the error message is the only line."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from sonoshift import progress
from sonoshift.errors import SonoshiftError


@pytest.fixture
def err(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the bars print, as a non-terminal stderr (a log file or a pipe) would receive it."""
    buf = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=buf, force_terminal=False))
    return buf


def test_a_finished_bar_prints_its_final_line(err: io.StringIO) -> None:
    assert list(progress.track([1, 2], "read frames")) == [1, 2]
    assert "read frames" in err.getvalue() and "2/2" in err.getvalue()
    with progress.make_progress() as bar:
        bar.add_task("synthesize", total=1, info="")
    assert "synthesize" in err.getvalue()


def test_a_bar_ended_by_an_error_prints_nothing(err: io.StringIO) -> None:
    with pytest.raises(SonoshiftError, match="unknown sampler"):
        with progress.make_progress() as bar:
            bar.add_task("synthesize", total=2, info="")
            raise SonoshiftError("unknown sampler 'bogus'.")
    assert err.getvalue() == ""


def test_a_track_loop_stopped_by_an_error_prints_nothing(err: io.StringIO) -> None:
    frames = progress.track(["a.png", "b.png"], "read frames")
    with pytest.raises(SonoshiftError):
        for name in frames:
            raise SonoshiftError(f"image {name} cannot be read.")
    frames.close()  # what collecting the suspended generator does after the caller has printed its error
    assert err.getvalue() == ""
