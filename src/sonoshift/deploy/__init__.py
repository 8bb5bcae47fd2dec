"""Deployment: ONNX export of every translator, an ONNX Runtime translator, int8 quantization and streaming.

- ``graphs``: the exportable forward of each translator (a generator; the DDGAN/cascade sampler unrolled over its
  N steps with the noise as explicit inputs) and the noise each call needs, drawn in the PyTorch sampler's order;
- ``export``: ``export_onnx(model, out)`` writes the graph with its crop/resize metadata in ``metadata_props``;
- ``runtime``: ``OnnxTranslator`` (same interface as the PyTorch translators) and ``load_runtime_translator``;
- ``quantize``: int8 static (calibrated, QDQ) or dynamic quantization of an exported model;
- ``stream``: frames one at a time through a translator with a bounded, drop-oldest queue (``StreamHarmonizer``).
"""
