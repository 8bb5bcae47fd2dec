"""Extra report sections a caller adds to the page (a figure, a caption, a table), without the report package
knowing what they are about: e.g. the real-data run's fetal-head overlays and head-proxy summary."""

from __future__ import annotations

import html
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sonoshift.errors import SonoshiftError

IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass(frozen=True, eq=False)
class ExtraSection:
    """One section of the report page, after the built-in ones.

    title: the heading; images: PNG/JPEG files shown in order (inlined in index.html, copied to
    ``sections/`` in the report folder); caption: text under the images; table: an optional DataFrame shown as an
    HTML table (floats to 4 significant digits) and written to ``sections/<slug>.csv``.
    """

    title: str
    images: tuple[Path, ...] = ()
    caption: str = ""
    table: pd.DataFrame | None = None

    @property
    def slug(self) -> str:
        """The title as a file-name stem (lower case, letters, digits and '_')."""
        return re.sub(r"[^a-z0-9]+", "_", self.title.lower()).strip("_") or "section"


def check_sections(sections: tuple[ExtraSection, ...] | list[ExtraSection]) -> None:
    """Raise SonoshiftError (one sentence naming the file) for a missing or unsupported image."""
    for s in sections:
        for p in s.images:
            p = Path(p)
            if not p.is_file():
                raise SonoshiftError(f"report section '{s.title}': image {p} does not exist.")
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise SonoshiftError(f"report section '{s.title}': image {p} is not a PNG or JPEG file.")


def write_sections(sections: list[ExtraSection], folder: Path) -> list[list[Path]]:
    """Copy each section's images (and write its table as CSV) into ``folder``; return the copied image paths."""
    copied: list[list[Path]] = []
    for i, s in enumerate(sections):
        paths = []
        for j, p in enumerate(s.images):
            dst = folder / f"{i:02d}_{s.slug}_{j}{Path(p).suffix.lower()}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst)
            paths.append(dst)
        if s.table is not None:
            folder.mkdir(parents=True, exist_ok=True)
            s.table.to_csv(folder / f"{i:02d}_{s.slug}.csv", index=False, lineterminator="\n")
        copied.append(paths)
    return copied


def _cell(v: object) -> str:
    if isinstance(v, float):
        return "–" if pd.isna(v) else f"{v:.4g}"
    return str(v)


def table_html(df: pd.DataFrame) -> str:
    """A DataFrame as a plain HTML table (header row, text columns left-aligned, every cell escaped)."""
    text_cols = {c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])}
    cls = {c: ' class="l"' if c in text_cols else "" for c in df.columns}
    head = "".join(f"<th{cls[c]}>{html.escape(str(c))}</th>" for c in df.columns)
    rows = ["<tr>" + "".join(f"<td{cls[c]}>{html.escape(_cell(v))}</td>" for c, v in zip(df.columns, r)) + "</tr>"
            for r in df.itertuples(index=False)]  # fmt: skip
    return "\n".join([f"<table><tr>{head}</tr>", *rows, "</table>"])


def section_html(section: ExtraSection, images_html: list[str]) -> str:
    """One section as HTML: heading, images, caption, table."""
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    if images_html:
        parts.append('<div class="extra">' + "".join(images_html) + "</div>")
    if section.caption:
        parts.append(f'<p class="note">{html.escape(section.caption)}</p>')
    if section.table is not None and not section.table.empty:
        parts.append(table_html(section.table))
    return "\n".join(parts)


def frame_markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (cells as in the HTML table)."""
    lines = ["| " + " | ".join(str(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
