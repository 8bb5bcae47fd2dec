"""sonoshift: harmonize fetal ultrasound across scanners and synthesize realistic fetal ultrasound."""

__version__ = "0.1.0"

from sonoshift.errors import SonoshiftError  # noqa: E402

__all__ = ["SonoshiftError", "__version__"]
