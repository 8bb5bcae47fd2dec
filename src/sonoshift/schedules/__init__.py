"""Noise schedules as pure functions: tensors in, tensors out, randomness only through explicit generators."""

from sonoshift.schedules.ddgan import (
    BETA_0,
    Schedule,
    ScheduleConfig,
    describe,
    grid_times,
    make_schedule,
    posterior_mean_var,
    q_sample,
    q_sample_pairs,
    sample_posterior,
    schedule_from_config,
    start_sample,
    uniform_times,
    vp_alpha_bar,
)

__all__ = [
    "BETA_0",
    "Schedule",
    "ScheduleConfig",
    "describe",
    "grid_times",
    "make_schedule",
    "posterior_mean_var",
    "q_sample",
    "q_sample_pairs",
    "sample_posterior",
    "schedule_from_config",
    "start_sample",
    "uniform_times",
    "vp_alpha_bar",
]
