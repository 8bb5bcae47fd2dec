"""The denoising diffusion GAN's few-step machinery as pure functions: the noise schedule (``schedule``) and the
sampler (``sampler``); tensors in, tensors out, randomness only through explicit generators. (The coming
synthesis model uses diffusers' schedulers, not copies of these.)"""

from sonoshift.diffusion.sampler import sample, sample_with_uncertainty
from sonoshift.diffusion.schedule import (
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
    "sample",
    "sample_posterior",
    "sample_with_uncertainty",
    "schedule_from_config",
    "start_sample",
    "uniform_times",
    "vp_alpha_bar",
]
