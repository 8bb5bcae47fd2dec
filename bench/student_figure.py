"""A figure of what a student and its no-teacher twin do to the same frames (PNG, uint8 grey).

Rows: test frames of the source domain; columns: the source frame, the student's anchor alone, the teacher (one
seeded sample), the student, each ``--run [TITLE=]RUN`` (no-teacher twin, its checkpoints, ...), the simulator ground
truth; one column title each.

    python bench/student_figure.py --data runs/demo/data --teacher runs/demo/models/ddgan --student st \
        --run "no-teacher twin, step 200=cg_da/checkpoints/step_00000200" --run "no-teacher twin=cg_da" \
        -o docs/img/student_depth_affine.png
"""

from __future__ import annotations

import argparse
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from sonoshift.data.cache import load_cache  # noqa: E402
from sonoshift.errors import exit_on_error  # noqa: E402
from sonoshift.inference.translate import to_signed, to_uint8  # noqa: E402
from sonoshift.methods import load_translator  # noqa: E402


def _title_and_path(spec: str) -> tuple[str, str]:
    title, sep, path = spec.rpartition("=")
    return (title, path) if sep else (spec.rstrip("/").split("/")[-1], spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="prepared dataset with ground truth")
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", required=True, help="an anchored student (its anchor is the second column)")
    ap.add_argument("--run", action="append", default=[], help="another translator column, [TITLE=]RUN (repeatable)")
    ap.add_argument("--frames", default="10,170,330,490", help="test-split frame indices (rows)")
    ap.add_argument("--scale", type=int, default=2, help="inches per 100 px of frame")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    idx = [int(i) for i in args.frames.split(",")]
    teacher = load_translator(args.teacher)
    src = np.asarray(load_cache(args.data, "test", teacher.source_domain))[idx]
    gt = np.asarray(load_cache(args.data, "test", teacher.source_domain, f"gt_{teacher.target_domain}"))[idx]
    x = to_signed(src)
    student = load_translator(args.student)
    runs = [_title_and_path(r) for r in args.run]
    with torch.no_grad():
        cols = [src, to_uint8(student.net.anchor(x)), to_uint8(teacher(x, generator=torch.Generator().manual_seed(0))),
                to_uint8(student(x))] + [to_uint8(load_translator(p)(x)) for _, p in runs] + [gt]
    titles = ["source", "anchor alone", "teacher\n(seed 0)", "student"] + [t for t, _ in runs] + ["ground truth"]
    h, w = src.shape[1:3]
    side = args.scale * w / 100
    fig, axes = plt.subplots(len(idx), len(cols), figsize=(side * len(cols), side * h / w * len(idx) + 0.6),
                             squeeze=False, gridspec_kw={"wspace": 0.03, "hspace": 0.03})  # fmt: skip
    for j, (c, t) in enumerate(zip(cols, titles)):
        for i in range(len(idx)):
            ax = axes[i, j]
            ax.imshow(c[i], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_axis_off()
        axes[0, j].set_title("\n".join(textwrap.wrap(t, 16)) if "\n" not in t else t, fontsize=8)
    fig.savefig(args.out, dpi=100, bbox_inches="tight")
    print(f"wrote {args.out}: columns {' | '.join(t.replace(chr(10), ' ') for t in titles)}")

if __name__ == "__main__":
    exit_on_error(main)
