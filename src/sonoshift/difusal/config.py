"""The DiFUSAL run configuration (YAML: configs/cpu/difusal.yaml). Arms, label regimes and the headline measures
are declared here, before the run; the run folder keeps a copy (RUN/config.yaml) and refuses a different one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from sonoshift.config import NonNegFloat, NonNegInt, PosFloat, PosInt, Range, Seed, UnitFloat, Validated

Percent = Annotated[float, Range(0, 100)]

# The default arms (every arm is in difusal/arms.py; the translated arms need data.harmonizer). Their order seeds
# the loop arms' rounds: append, never reorder.
KNOWN_ARMS = ("real", "classical_aug", "unfiltered", "uniform", "difusal")


@dataclass(frozen=True)
class LoopData(Validated):
    """Frames of a prepared dataset. size: side in px (INTER_AREA resize). planes: the classes (a frame of another
    plane is dropped). head_plane: the plane whose frames carry a measurable GA. max_per_class: per label regime
    and class, at most this many labelled training frames (seeded draw; the simulator's sweeps are ~90% "other").
    eval_per_class: the same cap for the val (weakness) and test (evaluation) frames. background_plane: the
    catch-all class ("other"; empty: none), for which no candidate is generated: the plane critic can only certify
    "none of the standard planes", which every failed sample of any plane satisfies, so its validity check is
    void there (and hard "other" samples taught the classifier to call ambiguous frames "other"). domains: only
    frames of these domains (scanner profiles; empty: all), e.g. the demo's target domain, whose plane judge the
    demo's loop may reuse. fill_plane: the plane of a frame with no plane label (empty: such frames are dropped);
    HC18 shows heads only and has no plane column, so the GA study on it sets the head plane here.

    Real data (real_data.py; paths relative to the ``--data`` folder): test_path: another prepared dataset whose
    frames (every split, the planes above) are the test set instead of ``--data``'s test split; test_part
    "african_test": only the African rule's test part of it (judges/plane/african.py), and the run refuses any
    labelled or unlabelled training frame of an African test-part patient. unlabelled_path: a prepared dataset
    whose images (every split, labels never read; only ``unlabelled_domains`` when given; only the African
    adaptation part with unlabelled_part "african_adaptation") the generator also trains on, as images only, with
    their own domain token (generator.sample_domain). harmonizer: a translator run folder (e.g. a CycleGAN
    africa -> spain): every stage also scores the test frames translated by it (at the prepared frame size, then
    resized like every frame), the "real + harmonized" and "both together" rows; its reverse generator (a
    CycleGAN's training -> test domain) makes the translated arms' extra training frames (arms.py). adapt_bn: every
    stage also scores its plane classifiers re-normalized on unlabelled_path's images (AdaBN: BatchNorm statistics
    only, no label; test_variants.py), the "+ adapted BN" rows; adapt_zooms (with adapt_bn): also as a test-time zoom
    ensemble re-normalized at each zoom (judges/plane/zoom.py), the "+ adapted BN at zooms" rows."""

    path: str = ""
    size: PosInt = 32
    planes: tuple[str, ...] = ("abdomen", "femur", "head", "other")
    head_plane: str = "head"
    background_plane: str = ""
    domains: tuple[str, ...] = ()
    fill_plane: str = ""
    max_per_class: PosInt = 60
    eval_per_class: PosInt = 60
    test_path: str = ""
    test_part: Literal["", "african_test"] = ""
    unlabelled_path: str = ""
    unlabelled_domains: tuple[str, ...] = ()
    unlabelled_part: Literal["", "african_adaptation"] = ""
    harmonizer: str = ""
    adapt_bn: bool = False
    adapt_zooms: tuple[PosFloat, ...] = ()


@dataclass(frozen=True)
class Downstream(Validated):
    """The downstream models (and the frozen critics, same recipe, another seed): a PlaneNet classifier and a
    GA regressor on head frames, both trained from scratch for a fixed number of steps. seeds: every training
    set is trained with this many seeds; the test scores are their mean (the first seed's models are the loop's
    "current" models: weakness and hardness). lr_schedule: "cosine" decays the LR to 0 over the steps (the last
    weights settle; session 12: the seed-to-seed sd of test macro-F1 at 10% fell from 0.05-0.12 to 0.02-0.03 at the
    same 150 steps), "constant" keeps it (sessions 5-11: one seed's macro-F1 moved by ~0.06 with the seed alone)."""

    stem: PosInt = 8
    widths: tuple[int, ...] = (16, 32)
    steps: PosInt = 150
    ga_steps: PosInt = 150
    batch_size: PosInt = 32
    lr: PosFloat = 3e-3
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    seeds: PosInt = 1


@dataclass(frozen=True)
class Generator(Validated):
    """The conditional diffusion generator (sonoshift.synth's U-Net), trained on the regime's labelled frames,
    then fine-tuned after every round that accepts images on real + every image accepted so far. The recipe follows
    the session-6 configs/cpu/synth.yaml: FiLM conditioning (time_norm "scale_shift"), v-prediction with Min-SNR
    weighting (synth.yaml now trains plain MSE, loss_weight "none", which followed GA better there; not yet
    measured in the loop),
    linear LR warm-up then cosine decay within each training call, an EMA of the weights (ema_decay; 0 = none)
    that is what samples, and classifier-free guidance 7. unlabelled > 0 (semi-supervised): the generator also
    trains on up to this many frames of the training patients whose labels the regime does NOT keep, as images
    only (null plane and GA tokens; drawn without looking at their labels), which make up ``unlabelled_share``
    of every batch: only the labels are scarce, not the images. The memorization guard then covers them too.
    sample_domain: "" (no domain token), or "data" / "extra": the U-Net gets a domain token, "data" for the
    frames of ``--data`` and "extra" for the images of ``data.unlabelled_path`` (e.g. the unlabelled African
    adaptation part), and every candidate is sampled with this token (accepted images are trained with it):
    "extra" asks for labelled planes in the look of the unlabelled domain. pseudo_label_conf > 0 (with unlabelled
    images): an unlabelled image whose frozen plane critic gives a standard plane at least this probability trains
    with that plane's token (difusal/pseudo.py; never the background plane; GA stays unknown); 0 = off."""

    block_out_channels: tuple[int, ...] = (32, 64, 128)
    attention: tuple[bool, ...] = (False, False, True)
    patch: PosInt = 2
    time_norm: Literal["default", "scale_shift"] = "scale_shift"
    prediction: Literal["epsilon", "v_prediction"] = "v_prediction"
    loss_weight: Literal["none", "min_snr"] = "min_snr"
    min_snr_gamma: PosFloat = 5.0
    warmup_steps: NonNegInt = 100
    ema_decay: UnitFloat = 0.995
    pretrain_steps: NonNegInt = 1200
    finetune_steps: NonNegInt = 100
    batch_size: PosInt = 16
    lr: PosFloat = 1e-3
    finetune_lr: PosFloat = 2e-4
    sample_steps: PosInt = 20
    guidance: NonNegFloat = 7.0
    probe: PosInt = 32
    unlabelled: NonNegInt = 0
    unlabelled_share: UnitFloat = 0.5
    sample_domain: Literal["", "data", "extra"] = ""
    pseudo_label_conf: UnitFloat = 0.0


@dataclass(frozen=True)
class Critics(Validated):
    """Frozen validity critics. plane_conf: min critic probability of the conditioned plane. ga_band: centiles
    of INTERGROWTH-21st HC for the conditioned GA whose GAs bound the accepted estimate (heads). knn: neighbours
    for realism; realism_percentile: the realism threshold is this percentile of real val frames' kNN distance.
    memo_percentile: near-copy threshold percentile (sonoshift.synth's calibration on real training frames).
    hist_bins: intensity histogram bins of the second realism check (Bhattacharyya coefficient). ga_slack
    "val_mae": the GA band is widened on both sides by the critic GA regressor's own mean |error| on the regime's
    labelled validation heads (a critic fitted on three patients' three GAs misses other GAs by ~5 weeks, far
    more than the band is wide, so without slack it rejects every head whose GA it does not know). plane_checkpoint:
    an already-trained sonoshift plane classifier used as the plane critic instead of one fitted here (e.g. the
    demo's judge); allowed only when every label regime keeps all labels (label hygiene, judge_critic.py).
    realism_reference "with_extra": the realism references (kNN embedding bank, pooled histogram) also hold the
    images of ``data.unlabelled_path`` (needed when candidates are sampled in that domain's look). self_train > 0:
    the plane critic is fitted a second time, on the labelled frames plus the generator's unlabelled images to which
    the first fit gives at least this probability, under its own labels (self-training on images only; no other
    labels are read); 0: off."""

    plane_conf: UnitFloat = 0.5
    ga_band: tuple[float, float] = (2.5, 97.5)
    knn: PosInt = 5
    realism_percentile: Percent = 95.0
    memo_percentile: Percent = 1.0
    hist_bins: PosInt = 32
    ga_slack: Literal["none", "val_mae"] = "none"
    plane_checkpoint: str = ""
    realism_reference: Literal["labelled", "with_extra"] = "labelled"
    self_train: UnitFloat = 0.0


@dataclass(frozen=True)
class Loop(Validated):
    """rounds: R; budget: candidates per round; floor: minimum candidates per (plane, GA bin) condition;
    ga_edges: GA bin edges in weeks; entropy_weight: weight of predictive entropy in the weakness; easy_conf: a
    candidate the CURRENT downstream classifier gives more than this for its plane is "too easy", unless it is a head
    whose GA the current estimator misses by more than ga_hard_weeks. per_plane_cap: at most this many accepted
    candidates per plane and round, the hardest first (0: no cap). synthetic_classical_aug: the synthetic arms
    (unfiltered, uniform, difusal) train their downstream models with the classical augmentation too (declared
    before the run; every synthetic arm gets it, so they stay comparable with each other and with
    ``classical_aug``). init_strength > 0: image-guided candidates (SDEdit): each candidate starts from an image
    of the generator's unlabelled pool (other training patients' images, or data.unlabelled_path's; seeded draw,
    labels never read; ``init_index`` in scores.csv), noised to this strength and denoised under the candidate's
    plane and GA, so that candidates carry the layouts of patients whose labels the regime does not keep
    (0: every candidate from pure noise). init_match: a candidate's start is drawn among the pool images the frozen
    plane critic finds most likely to be the candidate's plane (difusal/init_images.py)."""

    rounds: PosInt = 3
    budget: PosInt = 96
    floor: NonNegInt = 2
    ga_edges: tuple[float, ...] = (19.0, 25.0, 31.0, 38.0)
    entropy_weight: NonNegFloat = 1.0
    easy_conf: UnitFloat = 0.9
    ga_hard_weeks: NonNegFloat = 1.5
    per_plane_cap: NonNegInt = 0
    synthetic_classical_aug: bool = False
    init_strength: UnitFloat = 0.0
    init_match: bool = False


@dataclass(frozen=True)
class DifusalConfig(Validated):
    """The whole loop. label_fractions: label regimes (share of training patients whose labels are used; each is
    run with every arm). headline: the declared measures (macro_f1, accuracy, ga_mae_days); the first is the one
    the verdict compares. target_gain: the declared target of the best arm over the better of real-only and
    classical augmentation on the first headline measure (0.05 = 5 points); target_unfiltered: DiFUSAL over the
    unfiltered arm. With GA MAE as the first headline measure (the HC18 study: one plane), the verdict compares GA
    MAE instead (lower is better): target_ga_days, DiFUSAL's MAE at least this many days below the better of
    real-only and classical augmentation (0: lower), and below the unfiltered arm's."""

    name: str = "difusal"
    seed: Seed = 0
    label_fractions: tuple[float, ...] = (0.1, 0.25)
    arms: tuple[str, ...] = KNOWN_ARMS
    headline: tuple[Literal["macro_f1", "accuracy", "ga_mae_days"], ...] = ("macro_f1", "ga_mae_days")
    target_gain: UnitFloat = 0.05
    target_unfiltered: UnitFloat = 0.02
    target_ga_days: NonNegFloat = 0.0
    threads: PosInt = 1
    data: LoopData = field(default_factory=LoopData)
    downstream: Downstream = field(default_factory=Downstream)
    generator: Generator = field(default_factory=Generator)
    critics: Critics = field(default_factory=Critics)
    loop: Loop = field(default_factory=Loop)


__all__ = ["KNOWN_ARMS", "Critics", "DifusalConfig", "Downstream", "Generator", "Loop", "LoopData"]
