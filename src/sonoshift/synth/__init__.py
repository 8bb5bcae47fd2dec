"""Conditional diffusion synthesis of fetal ultrasound by plane, gestational age and scanner (docs/synth.md).

``load_synthesizer(RUN)`` returns a :class:`SynthPipeline`; ``train_synth`` trains one through the shared engine.
"""

from sonoshift.synth.config import SynthConfig
from sonoshift.synth.pipeline import SynthPipeline, load_synthesizer

__all__ = ["SynthConfig", "SynthPipeline", "load_synthesizer"]
