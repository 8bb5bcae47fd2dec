"""Spain -> Africa, raw, adapted and harmonized, under the African rule (``judges.plane.african``): one real-data stage.

- ``translation`` dataset: the FETAL_PLANES_DB images of the four shared planes (domain ``spain``, with their
  plane labels: the classifier trains on them) and the African **adaptation part** (domain ``africa``, labels
  removed: only its pixels may be used). A CycleGAN africa -> spain is trained on its train split.
- ``african_test`` dataset: the African **test part** only, with labels: nothing is trained, tuned or selected
  on it; it is only scored.
- The plane classifier trains on the ``spain`` frames (train split; val split early-stops) and scores the
  African test part raw, re-normalized on the adaptation part's images (AdaBN) and after the CycleGAN maps it
  toward the Spanish images (``spain_to_africa``).

Everything runs at one frame size (``size``: prepared frames, translator and classifier input), so the raw and
harmonized frames differ by the translation only, not by a resize.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from sonoshift.config import NonNegInt, PosInt, Seed, Validated, load_config, to_dict
from sonoshift.pipeline.stages import StageLog, path_key, run_stage

SPAIN, AFRICA = "spain", "africa"


@dataclasses.dataclass(frozen=True)
class SpainAfricaConfig(Validated):
    """enabled: run the stage; size: frame side (px) of the prepared data, translator and classifier;
    cyclegan_config / steps_cyclegan: the translator (0 steps = the config's budget); classifier_config: the
    plane classifier's YAML (its ``classes`` are set to the four shared planes, ``image_size`` to ``size``);
    steps_classifier: at most this many classifier steps (0 = the config's)."""

    enabled: bool = True
    size: PosInt = 64
    cyclegan_config: str = "configs/cpu/cyclegan.yaml"
    steps_cyclegan: NonNegInt = 1000
    classifier_config: str = "configs/cpu/plane_classifier.yaml"
    steps_classifier: NonNegInt = 0
    seed: Seed = 0


def translation_spec(data_root: Path, split: dict | None = None) -> Any:
    """FPDB (four shared planes, labelled, domain ``spain``) + the African adaptation part (unlabelled, domain
    ``africa``) as one DatasetSpec."""
    from sonoshift.data.public import african_planes_spec, fetal_planes_db_spec
    from sonoshift.data.spec import DatasetSpec
    from sonoshift.judges.plane.african import in_part
    from sonoshift.judges.plane.cross_domain import SHARED_PLANES

    fpdb = fetal_planes_db_spec(data_root, planes=list(SHARED_PLANES))
    afr = african_planes_spec(data_root)
    keep = in_part([it.patient_id for it in afr.items], "adaptation", split)
    items = [dataclasses.replace(it, domain=SPAIN, labels={"plane": it.labels["plane"]}) for it in fpdb.items]
    items += [dataclasses.replace(it, domain=AFRICA, labels={"centre": it.domain})
              for it, k in zip(afr.items, keep) if k]
    return DatasetSpec(items=tuple(items), name="spain_africa_translation", source=f"{fpdb.source} + {afr.source}")


def african_test_spec(data_root: Path, split: dict | None = None) -> Any:
    """The African test part (labelled; domain = centre) as a DatasetSpec."""
    from sonoshift.data.public import african_planes_spec
    from sonoshift.judges.plane.african import in_part

    afr = african_planes_spec(data_root)
    keep = in_part([it.patient_id for it in afr.items], "test", split)
    return dataclasses.replace(afr, items=tuple(it for it, k in zip(afr.items, keep) if k), name="african_test")


def run_spain_africa(
    root: Path, data_root: Path, cfg: SpainAfricaConfig, *, log: StageLog, force: bool, progress: bool
) -> dict[str, Any]:
    """The stages above under ``root``; returns {"table": cross_domain.csv path, "translator": run folder}."""
    from sonoshift.data.prepare import PrepareConfig, prepare
    from sonoshift.data.resize import ResizeConfig
    from sonoshift.judges.plane.african import african_split
    from sonoshift.judges.plane.cross_domain import SHARED_PLANES, CrossDomainConfig, spain_to_africa
    from sonoshift.judges.plane.train import ClassifierConfig
    from sonoshift.methods import train_method
    from sonoshift.pipeline.study import config_digest, config_path

    split = african_split()
    prep = PrepareConfig(resize=ResizeConfig(size=cfg.size), source_domain=AFRICA, target_domain=SPAIN)
    base = [to_dict(prep), path_key(data_root, root), split]
    trans, test = root / "translation", root / "african_test"
    run_stage("spain-africa: prepare", root, base,
              lambda: [str(prepare(translation_spec(data_root, split), trans, prep, progress=progress).out),
                       str(prepare(african_test_spec(data_root, split), test,
                                   dataclasses.replace(prep, source_domain=None, target_domain=None),
                                   progress=progress).out)], force=force, log=log)  # fmt: skip
    cg = root / "models" / "cyclegan"
    overrides = [f"data.source_domain={AFRICA}", f"data.target_domain={SPAIN}", f"data.size={cfg.size}",
                 f"train.seed={cfg.seed}"] + ([f"train.max_steps={cfg.steps_cyclegan}"] if cfg.steps_cyclegan else [])

    def _train() -> dict[str, Any]:
        r = train_method("cyclegan", trans, cg, config=config_path(cfg.cyclegan_config), overrides=overrides,
                         resume=(cg / "checkpoints" / "latest").is_file(), progress=progress)
        if r.interrupted:
            raise KeyboardInterrupt(f"CycleGAN training interrupted at step {r.step}; run again to resume")
        return {"run": str(cg), "steps": r.step}

    run_stage("spain-africa: train cyclegan africa -> spain", root,
              [base, overrides, cfg.cyclegan_config, config_digest(cfg.cyclegan_config)],
              _train, force=force, log=log)
    ccfg = load_config(ClassifierConfig, config_path(cfg.classifier_config),
                       [f"image_size={cfg.size}", f"train.seed={cfg.seed}"]
                       + ([f"train.steps={cfg.steps_classifier}"] if cfg.steps_classifier else []))
    ccfg = dataclasses.replace(ccfg, classes=SHARED_PLANES)
    out = root / "planes"

    def _classify() -> str:
        from sonoshift.judges.plane.data import load_samples

        # the adaptation part's images sit in the translation set (domain africa, no plane label)
        adaptation = load_samples(trans, ["train", "val", "test"], ccfg.image_size, label="centre", domains=[AFRICA])
        spain_to_africa(trans, test, out, CrossDomainConfig(classifier=ccfg), translator=cg, progress=progress,
                        african=split, adaptation=adaptation)
        return str(out / "cross_domain.csv")

    run_stage("spain-africa: plane classifier raw vs harmonized", root,
              [base, overrides, to_dict(ccfg), "adapt_bn", "zooms", "translated"], _classify, force=force, log=log)
    return {"table": str(out / "cross_domain.csv"), "translator": str(cg), "classifier": str(out / "classifier")}


def spain_africa_table(csv: str | Path) -> pd.DataFrame:
    """cross_domain.csv as the report shows it: one row per variant (in the file's order) with n, accuracy,
    macro-F1 and ECE over all test frames, then the accuracy per centre."""
    t = pd.read_csv(csv)
    order = list(dict.fromkeys(t["variant"]))
    every = t[t["domain"] == "all"].set_index("variant").reindex(order)
    out = every[["n", "accuracy", "macro_f1", "ece"]].rename(columns={"macro_f1": "macro-F1", "ece": "ECE"})
    centres = t[t["domain"] != "all"].pivot(index="variant", columns="domain", values="accuracy").reindex(order)
    out = out.join(centres.rename(columns=lambda c: f"accuracy {c}"))
    return out.reset_index()
