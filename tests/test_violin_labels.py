"""Violin tick labels (report): long run labels are wrapped so that neighbouring labels do not overlap."""

from __future__ import annotations

from sonoshift.report.violin import LABEL_WIDTH, _wrap


def test_long_labels_wrap_to_the_width_and_keep_every_word():
    label = "depth_affine (depth-wise linear grey map (diffusion anchor))"
    lines = _wrap(label).split("\n")
    assert lines[0] == "depth_affine"  # the method name alone on the first line
    assert all(len(line) <= LABEL_WIDTH for line in lines)
    assert " ".join(lines).split() == label.split()


def test_a_word_longer_than_the_width_is_kept_whole():
    assert _wrap("a_very_long_method_name_without_spaces") == "a_very_long_method_name_without_spaces"
    assert _wrap("ddgan (cpu/ddgan)") == "ddgan\n(cpu/ddgan)"
