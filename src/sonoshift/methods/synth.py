"""The conditional diffusion synthesizer (``sonoshift.synth``, docs/synth.md) in the method registry.

Kind ``synthesizer``: ``sonoshift.methods.load_model(RUN)`` (or ``sonoshift.synth.load_synthesizer``) returns a
``SynthPipeline``; `sonoshift train synth --data DATA [data.paths=[MORE,...]]` trains it on the shared engine.
"""

from sonoshift.methods import MethodSpec, register
from sonoshift.synth.config import SynthConfig
from sonoshift.synth.pipeline import pipeline_from_checkpoint
from sonoshift.synth.train import build, training_data

SPEC = register(MethodSpec(
    name="synth", kind="synthesizer", config=SynthConfig, dataset=training_data, build=build,
    load=pipeline_from_checkpoint,
    summary="Train the conditional diffusion synthesizer (plane, GA, scanner; classifier-free guidance); "
            "more prepared datasets join with data.paths=[...].",
    default_config="configs/cpu/synth.yaml",
))
