"""Cell plans: every backend × rule cell of a study, resolved once into an explicit value.

A :class:`CellPlan` holds everything a fit of that cell needs besides data and parameters:
the rule, the backend (``"reference"`` for rules that need none), the merged search space,
the device, the objective, the seed, the trial budget, the protocol's folds and, when the cell
cannot run, the reason. Tuning, refits and status all read plans; nothing re-derives them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from spikebench.errors import BackendError, SpecError
from spikebench.harness.metrics import MetricName
from spikebench.harness.protocol import Fold
from spikebench.harness.space import Fixed, Param
from spikebench.harness.spec import StudySpec, ThresholdRule, data_options, rule_space

if TYPE_CHECKING:
    from spikebench.backends.base import Backend
    from spikebench.harness.rules.base import Rule

#: Backend name of cells whose rule needs no spiking backend (the non-spiking references).
REFERENCE = "reference"


@dataclasses.dataclass(frozen=True)
class CellPlan:
    """One backend × rule cell, resolved (module docstring)."""

    study: str
    backend: str
    rule: str
    kind: str
    space: Mapping[str, Param]
    device: str
    #: The validation metric Optuna maximises and early stopping reads.
    metric: MetricName
    seed: int
    #: Optuna trials per study of this cell; 0 = not tuned (default parameters).
    trials: int
    folds: tuple[Fold, ...]
    skip_reason: str = ""
    #: How the decision threshold is chosen on validation (:func:`~spikebench.harness.
    #: metrics.choose_threshold`).
    threshold_rule: ThresholdRule = "fixed"
    #: What the rule reads: "features" (the feature table), "geometry" (ROI area and slice
    #: position only: the leak detector) or "images" (the liver crops: the image track).
    inputs: str = "features"

    @property
    def key(self) -> str:
        """File-name key: ``<backend>__<rule>``."""
        return f"{self.backend}__{self.rule}"

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.rule}"

    @property
    def track(self) -> str:
        """The report's track: "images" for rules reading crops, else "features"."""
        return track_of(self.inputs)

    @property
    def tuned(self) -> bool:
        return self.trials > 0 and not self.skip_reason

    def study_name(self, fold: Fold) -> str:
        """Optuna study of ``fold``: ``<study>/<backend>/<rule>[/<fold study key>]``."""
        base = f"{self.study}/{self.backend}/{self.rule}"
        return f"{base}/{fold.study}" if fold.study else base

    def studies(self) -> dict[str, Fold]:
        """One fold per distinct Optuna study of this cell (the fold it tunes on)."""
        out: dict[str, Fold] = {}
        for fold in self.folds:
            out.setdefault(self.study_name(fold), fold)
        return out

    def refit_seed(self, fold: Fold) -> int:
        """Training seed of the refit of ``fold`` (a fold's further refits add multiples of a
        prime that no repeat or fold offset reaches)."""
        return self.seed + fold.repeat + 1000 * fold.fold + 100_003 * fold.refit


def track_of(inputs: str) -> str:
    """``"images"`` for the image track's inputs, ``"features"`` for everything else (the
    feature table, and the geometry leak detector read from it)."""
    return "images" if inputs == "images" else "features"


def images_missing(spec: StudySpec) -> str:
    """Why image rules cannot run on the spec's data ("" when the source delivers crops)."""

    _, options = data_options(spec)
    if getattr(options, "images", False):
        return ""
    fields = type(options).model_fields
    if "images" in fields:
        return ("image rule: the data source was not asked for crops; set images = true in "
                "[data]" + (" (with crop = 64, crop_spacing_mm = ...)" if "crop" in fields
                            else ""))
    return (f"image rule: the {spec.data.source!r} data source delivers no image crops "
            "(use the phantom, msd or medmnist source with images = true)")


def _unservable(backend: Backend, rule: Rule, no_images: str) -> str:
    """Why ``backend`` cannot serve ``rule`` on this data ("" when it can)."""
    if rule.inputs == "images" and no_images:
        return no_images
    from spikebench.harness.rules.serving import why_not

    return why_not(backend, rule)


def inputs_available(plan: CellPlan, feature_names: list[str]) -> CellPlan:
    """``plan``, skipped with the reason when its rule reads inputs the loaded table lacks
    (the spec-level reasons, such as a missing image view, are set by :func:`plan_cells`)."""
    if plan.inputs == "geometry" and "roi_area_mm2" not in feature_names:
        return dataclasses.replace(plan, skip_reason=(
            "the geometry reference (leak detector) needs the 'roi_area_mm2' feature that "
            "spikebench extract writes; this table has none"))
    return plan


def cuda_problem() -> str:
    """Why this torch cannot run on CUDA ("" when it can): a CPU-only build, or a CUDA build
    that sees no device.

    Examples
    --------
    >>> import torch
    >>> cuda_problem() == "" or cuda_problem().startswith("no CUDA device: ")
    True
    """
    import torch

    if torch.cuda.is_available():
        return ""
    if torch.version.cuda is None:
        return (f"no CUDA device: torch {torch.__version__} is a CPU-only build; install a "
                "CUDA build of torch (https://pytorch.org/get-started/locally/) on a machine "
                "with an NVIDIA GPU")
    return (f"no CUDA device: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no "
            "GPU; check the driver with nvidia-smi and that CUDA_VISIBLE_DEVICES does not "
            "hide it")


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``; a device this machine does
    not have (no CUDA GPU, ``cuda:N`` beyond its GPUs, ``mps`` without Apple's GPU) is an
    error naming the key, raised before any work."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpecError(f"[study].device = {name!r}: {cuda_problem()}; or set device = "
                            "'auto' or 'cpu'")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise SpecError(f"[study].device = {name!r} but this machine has "
                            f"{torch.cuda.device_count()} CUDA GPU(s) (cuda:0 .. "
                            f"cuda:{torch.cuda.device_count() - 1}); use one of them or 'auto'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None
                              and torch.backends.mps.is_available()):
        raise SpecError("[study].device = 'mps' but Apple's Metal GPU (MPS) is not available "
                        "on this machine; use 'auto' or 'cpu'")
    return name


def plan_cells(spec: StudySpec, folds: list[Fold], *, trials: int | None = None,
               device: str | None = None) -> list[CellPlan]:
    """Every grid cell, then every reference, as plans (unservable cells carry the reason)."""
    from spikebench.backends import get_backend
    from spikebench.harness.rules import get_rule

    on = device or resolve_device(spec.study.device)
    budget = trials or spec.search.trials
    rules = {r: get_rule(r) for r in [*spec.grid.rules, *spec.study.references]}
    no_images = (images_missing(spec)
                 if any(rule.inputs == "images" for rule in rules.values()) else "")

    def plan(backend: str, name: str, trials: int, skip_reason: str) -> CellPlan:
        rule = rules[name]
        return CellPlan(study=spec.study.name, backend=backend, rule=name, kind=rule.kind,
                        space=rule_space(spec, name), device=on, metric=spec.study.metric,
                        seed=spec.study.seed, trials=trials, folds=tuple(folds),
                        skip_reason=skip_reason, threshold_rule=spec.study.threshold,
                        inputs=rule.inputs)

    plans = []
    for b in spec.grid.backends:
        backend: Backend | None
        try:
            backend, reason = get_backend(b), ""
        except BackendError as exc:
            backend, reason = None, str(exc)
        for r in spec.grid.rules:
            why = reason or (_unservable(backend, rules[r], no_images)
                             if backend is not None else "")
            plans.append(plan(b, r, budget, why))
    for r in spec.study.references:
        # a reference is tuned like every other cell, with the same budget on the same inner
        # validation patients, unless its space is fixed (nothing to tune)
        space = rule_space(spec, r)
        tuned = budget if any(not isinstance(p, Fixed) for p in space.values()) else 0
        plans.append(plan(REFERENCE, r, tuned,
                          no_images if rules[r].inputs == "images" else ""))
    return plans
