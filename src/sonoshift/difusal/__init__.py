"""DiFUSAL: a self-improving synthesis loop judged by plane classification and GA (docs/difusal.md).

``run_difusal(cfg, data, out)`` runs every arm and label regime round by round (each round a resumable stage);
``write_report(out)`` turns the run folder into report.html.
"""

from sonoshift.difusal.config import DifusalConfig

__all__ = ["DifusalConfig"]
