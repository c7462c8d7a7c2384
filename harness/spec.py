"""Study specs: a TOML file validated into a :class:`StudySpec` (unknown keys are errors).

```toml
[study]                      # name, seed, device, objective, references, inference steps
name = "demo"
[data]                       # where the features come from
source = "phantom"           # "phantom" | "msd" | "table"
[grid]                       # the backend × rule cells
backends = ["custom", "snntorch", "spikingjelly"]
rules = ["surrogate", "tempotron", "active"]
[split]                      # patient-level protocol
repeats = 5
[search]                     # Optuna: trials, sampler, pruner, storage, objectives
trials = 20
[space.surrogate]            # per-rule search-space overrides (see spikebench.harness.space;
                             # references are tuned like every other cell)
lr = {low = 1e-3, high = 1e-2, log = true}
```

Every error is a :class:`~spikebench.errors.SpecError` naming the file and the key
(``[search].trials``) and what is allowed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spikebench.errors import SpecError
from spikebench.harness.metrics import MetricName
from spikebench.harness.space import Param

if TYPE_CHECKING:
    from spikebench.datasets.sources.base import DataSource, SourceOptions


#: How the decision threshold of the thresholded metrics is chosen on validation.
ThresholdRule = Literal["youden", "f1", "fixed"]
#: A protocol scheme (:mod:`spikebench.harness.protocol`).
Scheme = Literal["holdout", "nested-cv", "repeated-splits", "predefined"]


class _Strict(BaseModel):
    # NaN and infinities are never a valid setting (TOML can write them: nan, inf)
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


#: Largest seed a spec may give: the seeds derived from it (refits add up to ~2.1e6, local
#: workers their index) stay below 2**32, what every generator (numpy's legacy one too) takes.
MAX_SEED = 2**31 - 1


class StudyTable(_Strict):
    name: str = "study"
    seed: int = Field(0, ge=0, le=MAX_SEED)
    #: "auto" = CUDA when available, else CPU; or "cpu", "cuda", "cuda:1".
    device: str = "auto"
    #: Validation metric Optuna maximises (also the early-stopping criterion); by default the
    #: primary endpoint's metric, slice-level ROC-AUC.
    metric: MetricName = "roc_auc"
    #: Non-spiking reference rules (kind "reference", no backend) fitted on the same folds
    #: with their default parameters; "geometry" is the leak detector (ROI area and slice
    #: position only).
    references: list[str] = ["logistic_regression", "mlp", "geometry"]
    #: Decision threshold of accuracy, balanced accuracy, F1 and MCC, chosen on validation:
    #: "youden" (max sensitivity + specificity − 1), "f1" (max F1) or "fixed" (0.5).
    threshold: ThresholdRule = "youden"
    #: A patient-level tuning metric needs at least this many validation patients per class
    #: (below it the metric takes few distinct values and tuning chooses among ties).
    min_val_patients_per_class: int = Field(5, ge=1, le=1000)
    #: Inference time steps as multiples of the training T (temporal flexibility).
    eval_steps: list[float] = [0.5, 1.0, 2.0]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or "/" in v:
            raise ValueError("must be a non-empty name without '/'")
        return v

    @field_validator("eval_steps")
    @classmethod
    def _eval_steps(cls, v: list[float]) -> list[float]:
        if any(x <= 0 or x > 16 for x in v):
            raise ValueError("multiples of the training T must be in (0, 16]")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", v):
            raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return v


class DataTable(BaseModel):
    """``[data]``: ``source`` names a data-source plug-in (``spikebench datasets`` lists them);
    every other key is that source's option, validated by the source's own options model
    (:mod:`spikebench.datasets.sources`)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    source: str

    @property
    def options(self) -> dict[str, Any]:
        """The source's options as written in the spec (everything but ``source``)."""
        return dict(self.model_extra or {})


class GridTable(_Strict):
    backends: list[str] = ["custom"]
    rules: list[str] = ["surrogate"]

    @field_validator("backends", "rules")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must list at least one name")
        if len(set(v)) != len(v):
            raise ValueError(f"lists a name twice: {v}")
        return v


#: Refits per nested-cv fold when ``[split].refit_seeds`` is not given.
DEFAULT_REFIT_SEEDS = 3


class SplitTable(_Strict):
    #: Protocol scheme (:mod:`spikebench.harness.protocol`): "holdout" (sealed test set,
    #: repeats), "nested-cv" (outer K-fold, every patient tested once per repeat) or
    #: "repeated-splits" (R independent train/val/test splits, tuning redone in each) or
    #: "predefined" (the source's own train/val/test split, e.g. MedMNIST's official one:
    #: tuned on its train/val, its test set tested once per repeat).
    scheme: Scheme = "nested-cv"
    #: holdout and repeated-splits: training repeats (new seed and train/validation split);
    #: predefined: training repeats (new seed, the same official split);
    #: nested-cv: how often the whole nested cross-validation is redone with new outer folds.
    repeats: int = Field(5, ge=1, le=100)
    #: nested-cv: outer folds.
    outer_folds: int = Field(5, ge=2, le=20)
    test_fraction: float = Field(0.25, gt=0, lt=1)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    #: Refits of each fold's tuned configuration with different seeds (tuning is not
    #: repeated): the report's intervals and tests carry their spread, the training
    #: randomness. Default: 3 under nested-cv, whose single pass would otherwise leave it out;
    #: 1 under holdout and repeated-splits, whose repeats already retrain with new seeds.
    refit_seeds: int | None = Field(None, ge=1, le=20)
    #: nested-cv: inner folds for tuning. 1 (default): one inner train/validation split
    #: (``val_fraction``). K > 1: a stratified K-fold of each outer training set by patient;
    #: a trial's objective is its mean validation score over the K inner folds (K fits per
    #: trial; pruning after each inner fold), and refit ``r`` trains on inner fold ``r mod K``
    #: (early stopping and decision threshold on that fold's validation patients), so with
    #: ``refit_seeds >= K`` every outer-training patient chooses a threshold once. For small
    #: cohorts, whose single validation split holds few lesion-free patients.
    inner_folds: int = Field(1, ge=1, le=20)

    @model_validator(mode="after")
    def _inner_folds_need_nested_cv(self) -> SplitTable:
        if self.inner_folds > 1 and self.scheme != "nested-cv":
            raise ValueError(f"inner_folds = {self.inner_folds} applies to scheme = "
                             f"\"nested-cv\" only, not {self.scheme!r}: remove it or use "
                             "nested-cv")
        return self

    @property
    def n_refits(self) -> int:
        """``refit_seeds`` with its scheme-dependent default applied."""
        if self.refit_seeds is not None:
            return self.refit_seeds
        return DEFAULT_REFIT_SEEDS if self.scheme == "nested-cv" else 1


class SearchTable(_Strict):
    trials: int = Field(20, ge=1, le=100_000)
    #: Optuna sampler by name (:data:`spikebench.harness.samplers.SAMPLERS`).
    sampler: str = "tpe"
    #: Optuna pruner by name (:data:`spikebench.harness.pruners.PRUNERS`) and its settings
    #: (defaults documented there, e.g. median: n_startup_trials = 4, n_warmup_steps = 3).
    pruner: str = "median"
    pruner_options: dict[str, Any] = {}
    #: Random start-up trials before TPE / GP model the objective. Default: a third of the
    #: trials, at most 10 (Optuna's own default), so short studies are tuned, not only sampled.
    startup_trials: int | None = Field(None, ge=1, le=100_000)
    #: Empty: Optuna's journal file in the results folder. Else any Optuna storage URL.
    storage: str = ""
    #: Second objective for multi-objective mode: minimise synaptic operations per sample or
    #: training time, alongside maximising the validation metric.
    minimize: Literal["", "synops", "train_seconds"] = ""
    #: Seconds between worker heartbeats, and silence after which a RUNNING trial is failed
    #: and re-queued (at most ``max_retry`` times). ``max_retry`` also bounds the retries of a
    #: trial or refit that failed for a reason that may pass (out of memory, a lost connection,
    #: a killed worker: :mod:`spikebench.harness.retries`).
    heartbeat_interval: int = Field(2, ge=1, le=3600)
    grace_period: int = Field(6, ge=2, le=86_400)
    max_retry: int = Field(3, ge=0, le=100)
    #: Seconds between polls while waiting for other workers' trials or refits.
    poll_seconds: float = Field(0.5, ge=0.01, le=60)

    @model_validator(mode="after")
    def _grace(self) -> SearchTable:
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError("grace_period must exceed heartbeat_interval")
        return self


class AnalysisTable(_Strict):
    """The pre-specified primary analysis the report runs (named before the study runs)."""

    #: The primary metric of every comparison: slice-level ROC-AUC (prevalence-free, with
    #: patient-clustered inference; docs/protocol.md says why). Patient-level ROC-AUC and
    #: PR-AUC are reported as secondary endpoints.
    primary_metric: MetricName = "roc_auc"
    #: Superiority family as ["backend/rule", "backend/rule"] pairs; default: every SNN cell vs
    #: reference/logistic_regression, and the rules against each other on the custom backend.
    family: list[list[str]] | None = None
    #: Equivalence (TOST) pairs; default: every backend vs custom for the same rule.
    equivalence: list[list[str]] | None = None
    #: The metric equivalence is judged on, and the margin on its scale (a difference within
    #: ±margin counts as equivalent). A prevalence-free scale (ROC-AUC) keeps the margin's
    #: meaning whatever the lesion share.
    equivalence_metric: MetricName = "roc_auc"
    equivalence_margin: float = Field(0.05, gt=0, lt=1)
    alpha: float = Field(0.05, gt=0, lt=0.5)
    #: Patient score from slice probabilities: "max" or "topk_mean" (mean of the top_k).
    patient_score: Literal["max", "topk_mean"] = "max"
    top_k: int = Field(3, ge=1, le=1000)
    n_bootstrap: int = Field(2000, ge=100, le=100_000)
    #: Seed of the report's patient resamples (pre-specified with the rest of the analysis).
    bootstrap_seed: int = Field(0, ge=0, le=2**32 - 1)

    @field_validator("family", "equivalence")
    @classmethod
    def _pairs(cls, v: list[list[str]] | None) -> list[list[str]] | None:
        for pair in v or []:
            if len(pair) != 2 or any(p.count("/") != 1 for p in pair):
                raise ValueError(f'each entry must be ["backend/rule", "backend/rule"], got {pair}')
        return v


class CalibrationTable(_Strict):
    """``[calibration]``: the cohort ``spikebench calibrate`` simulates when no results folder
    is given (defaults: the Medical Segmentation Decathlon liver release; docs/protocol.md
    says where each value comes from), and how many studies it simulates."""

    patients: int = Field(131, ge=8, le=100_000)
    #: [split].scheme = "predefined": the size of the source's own test set (patients), which
    #: every run tests (e.g. 310 for NoduleMNIST3D); required there, unused otherwise.
    test_patients: int | None = Field(None, ge=4, le=100_000)
    #: Shares of lesion-free patients to simulate, one composition each.
    lesion_free: list[float] = [0.10, 0.20]
    #: Liver slices per patient: mean, standard deviation, minimum, maximum.
    slices: list[float] = [145.0, 40.0, 60.0, 250.0]
    #: Mean share of lesion slices among a lesion patient's liver slices.
    lesion_fraction: float = Field(0.3, gt=0, lt=1)
    #: Between-patient share of the score noise (intra-patient correlation of slice scores).
    icc: float = Field(0.3, ge=0, lt=1)
    #: Correlation of two cells' scores of the same slice.
    rho: float = Field(0.65, ge=0, lt=1)
    #: The cells' slice ROC-AUC.
    auc: float = Field(0.80, gt=0.5, lt=1)
    #: Run-to-run standard deviation of a run's pooled slice ROC-AUC (training randomness).
    sigma_run: float = Field(0.013, ge=0, le=0.2)
    #: True differences of slice ROC-AUC whose power is reported.
    deltas: list[float] = [0.05, 0.10]
    #: Simulated studies per composition (Monte-Carlo standard error ~ sqrt(p(1-p)/n)).
    replicates: int = Field(400, ge=10, le=100_000)
    #: Simulated studies of the calibration in every report (measured composition).
    report_replicates: int = Field(100, ge=0, le=100_000)
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @field_validator("lesion_free")
    @classmethod
    def _shares(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < x < 1 for x in v):
            raise ValueError("must list shares strictly between 0 and 1")
        return v

    @field_validator("slices")
    @classmethod
    def _slices(cls, v: list[float]) -> list[float]:
        if len(v) != 4 or not (v[1] >= 0 and 1 <= v[2] <= v[0] <= v[3] <= 100_000):
            raise ValueError("must be [mean, sd, min, max] with 1 <= min <= mean <= max")
        return v

    @field_validator("deltas")
    @classmethod
    def _deltas(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < x < 0.5 for x in v):
            raise ValueError("must list differences of ROC-AUC between 0 and 0.5")
        return v


class StudySpec(_Strict):
    study: StudyTable = StudyTable()
    data: DataTable
    grid: GridTable = GridTable()
    split: SplitTable = SplitTable()
    search: SearchTable = SearchTable()
    analysis: AnalysisTable = AnalysisTable()
    calibration: CalibrationTable = CalibrationTable()
    #: ``[space.<rule>]`` overrides of a rule's default search space.
    space: dict[str, dict[str, Any]] = {}

    @property
    def multi_objective(self) -> bool:
        return bool(self.search.minimize)

    @model_validator(mode="after")
    def _space_rules(self) -> StudySpec:
        extra = set(self.space) - set(self.grid.rules) - set(self.study.references)
        if extra:
            raise ValueError(
                f"[space] has tables for rules not in [grid].rules or [study].references: "
                f"{sorted(extra)}"
            )
        return self


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not str(p).startswith(("function-after", "literal", "tuple"))]
    if not parts:
        return "spec"
    if len(parts) == 1:
        return f"key {parts[0]!r}"
    return f"[{parts[0]}].{'.'.join(parts[1:])}"


def parse_spec(raw: dict[str, Any], source: str = "<spec>") -> StudySpec:
    """Validate a parsed TOML mapping; errors name ``source`` and every offending key."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a spec must be a TOML table, got {type(raw).__name__}")
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = _loc(err["loc"])
            if err["type"] == "extra_forbidden":
                lines.append(f"{where}: unknown key (check the spelling; see studies/demo.toml)")
            elif err["type"] == "missing":
                lines.append(f"{where}: required key is missing")
            else:
                lines.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
        raise SpecError(f"{source}: invalid study spec:\n  " + "\n  ".join(lines)) from None
    _check_names(spec, source)
    return spec


def _check_names(spec: StudySpec, source: str) -> None:
    """Plug-in names (backends, rules, references, data source, sampler, pruner) and their
    settings, named with what is installed; every error names the spec file and the key."""
    try:
        _check_grid(spec)
        _check_data(spec)
        _check_search(spec)
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None


def _check_grid(spec: StudySpec) -> None:
    from spikebench.backends.registry import available_backends
    from spikebench.harness.rules import available_rules, get_rule

    backends, rules = available_backends(), available_rules()
    for name in spec.grid.backends:
        if name not in backends:
            raise SpecError(f"[grid].backends: unknown backend {name!r}; installed: "
                            f"{', '.join(backends)}")
    for name in spec.grid.rules:
        if name not in rules:
            raise SpecError(f"[grid].rules: unknown rule {name!r}; installed: {', '.join(rules)}")
    for name in spec.study.references:
        if name not in rules or get_rule(name).needs_backend:
            known = [r for r in rules if not get_rule(r).needs_backend]
            raise SpecError(f"[study].references: {name!r} is not a reference rule; installed: "
                            f"{', '.join(known)}")
    for rule, overrides in spec.space.items():
        if not isinstance(overrides, dict):
            raise SpecError(f"[space.{rule}] must be a table")
        rule_space(spec, rule)  # unknown keys and out-of-domain values are errors


def _check_data(spec: StudySpec) -> None:
    data_options(spec)


def _check_search(spec: StudySpec) -> None:
    from spikebench.harness.pruners import pruner_options
    from spikebench.harness.samplers import SAMPLERS

    if spec.search.sampler not in SAMPLERS:
        raise SpecError(f"[search].sampler: unknown sampler {spec.search.sampler!r}; known: "
                        f"{', '.join(SAMPLERS)}")
    pruner_options(spec.search.pruner, spec.search.pruner_options)


def data_options(spec: StudySpec) -> tuple[DataSource[Any], SourceOptions]:
    """``(source plug-in, validated options)`` of the spec's ``[data]`` table."""
    from spikebench.datasets.sources import get_source
    from spikebench.errors import DataError

    try:
        source = get_source(spec.data.source)
    except DataError as exc:
        raise SpecError(f"[data].source: {exc}") from None
    try:
        options = source.Options.model_validate(spec.data.options)
    except ValidationError as exc:
        raise SpecError(_validation_message(exc, "data")) from None
    return source, options


def _validation_message(exc: ValidationError, table: str) -> str:
    lines = []
    for err in exc.errors():
        where = f"[{table}].{'.'.join(str(p) for p in err['loc'])}" if err["loc"] else f"[{table}]"
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key for this source (check the spelling)")
        elif err["type"] == "missing":
            lines.append(f"{where}: required key is missing")
        else:
            lines.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    return "invalid study spec:\n  " + "\n  ".join(lines)


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a TOML study spec; relative data paths are taken from the spec
    file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: study spec not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the study spec ({exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML ({exc})") from None
    spec = parse_spec(raw, str(path))
    source, _ = data_options(spec)
    options = spec.data.options
    for key in source.path_options:
        value = options.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            options[key] = str((path.parent / value).resolve())
    data = DataTable.model_validate({"source": spec.data.source, **options})
    return spec.model_copy(update={"data": data})


def rule_space(spec: StudySpec, rule: str) -> dict[str, Param]:
    """The rule's default search space with the spec's ``[space.<rule>]`` overrides."""
    from spikebench.harness.rules import get_rule
    from spikebench.harness.space import merge_space

    r = get_rule(rule)
    return merge_space(r.search_space(), spec.space.get(rule, {}), f"[space.{rule}]",
                       r.domains())
