"""Inference-time samplers (pure loops over trained networks and schedules)."""
