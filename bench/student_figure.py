"""A figure of what a student and its no-teacher twin do to the same frames (PNG, uint8 grey).

Rows: test frames of the source domain; columns: the source frame, the student's anchor alone, the teacher (one
seeded sample), each ``--run`` (student, no-teacher twin, its checkpoints, ...), the simulator ground truth.

    python bench/student_figure.py --data runs/demo/data --teacher runs/demo/models/ddgan --student st \
        --run cg_da/checkpoints/step_00000200 --run cg_da -o docs/img/student_depth_affine.png
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from sonoshift.data.cache import load_cache
from sonoshift.inference.translate import to_signed, to_uint8
from sonoshift.methods import load_translator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="prepared dataset with ground truth")
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", required=True, help="an anchored student (its anchor is the second column)")
    ap.add_argument("--run", action="append", default=[], help="another translator column (repeatable)")
    ap.add_argument("--frames", default="10,170,330,490", help="test-split frame indices (rows)")
    ap.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of the figure")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    idx = [int(i) for i in args.frames.split(",")]
    teacher = load_translator(args.teacher)
    src = np.asarray(load_cache(args.data, "test", teacher.source_domain))[idx]
    gt = np.asarray(load_cache(args.data, "test", teacher.source_domain, f"gt_{teacher.target_domain}"))[idx]
    x = to_signed(src)
    student = load_translator(args.student)
    with torch.no_grad():
        cols = [src, to_uint8(student.net.anchor(x)), to_uint8(teacher(x, generator=torch.Generator().manual_seed(0))),
                to_uint8(student(x))] + [to_uint8(load_translator(r)(x)) for r in args.run] + [gt]
    img = np.concatenate([np.concatenate([c[i] for c in cols], axis=1) for i in range(len(idx))], axis=0)
    cv2.imwrite(args.out, cv2.resize(img, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_NEAREST))
    print(f"wrote {args.out}: columns source | anchor | teacher | student | {' | '.join(args.run)} | ground truth")


if __name__ == "__main__":
    main()
