"""End-to-end pipelines: the demo on simulated data and the real-data run, as resumable stages."""
