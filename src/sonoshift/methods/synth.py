"""Registers the diffusion synthesizer (``sonoshift.synth``) under the method name "synth" (docs/engine.md §5).

A synthesizer generates frames rather than translating them: load it with ``sonoshift.synth.load_synthesizer``.
"""

from sonoshift.synth.registry import register

register()
