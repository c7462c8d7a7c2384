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
[space.surrogate]            # per-rule search-space overrides (see spikebench.harness.space)
lr = {low = 1e-3, high = 1e-2, log = true}
```

Every error is a :class:`~spikebench.errors.SpecError` naming the file and the key
(``[search].trials``) and what is allowed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spikebench.errors import SpecError

METRIC_NAMES = ("accuracy", "balanced_accuracy", "roc_auc", "pr_auc", "f1", "mcc",
                "patient_roc_auc", "patient_pr_auc")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class StudyTable(_Strict):
    name: str = "study"
    seed: int = 0
    #: "auto" = CUDA when available, else CPU; or "cpu", "cuda", "cuda:1".
    device: str = "auto"
    #: Validation metric Optuna maximises (also the early-stopping criterion).
    metric: Literal[METRIC_NAMES] = "pr_auc"  # type: ignore[valid-type]
    #: Non-spiking reference models evaluated in the same splits.
    references: list[Literal["logistic_regression", "mlp"]] = ["logistic_regression", "mlp"]
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
        if any(x <= 0 for x in v):
            raise ValueError("multiples of the training T must be > 0")
        return v


class DataTable(_Strict):
    source: Literal["phantom", "msd", "table"]
    #: phantom: folder to generate into (default DIR/phantom); msd: dataset root; table: file.
    path: str | None = None
    cases: int = Field(16, ge=4, description="phantom: number of training volumes")
    phantom_seed: int = 0
    shape: list[int] = [96, 96]
    label: str = "label"
    group: str | None = "patient_id"
    min_lesion_voxels: int = Field(1, ge=1)
    workers: int = Field(1, ge=1)
    on_error: Literal["fail", "skip"] = "fail"

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: list[int]) -> list[int]:
        if len(v) != 2 or min(v) < 32:
            raise ValueError("must be two in-plane sizes >= 32, e.g. [96, 96]")
        return v

    @model_validator(mode="after")
    def _path_needed(self) -> DataTable:
        if self.source in ("msd", "table") and not self.path:
            raise ValueError(f"source = {self.source!r} needs 'path'")
        return self


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


class SplitTable(_Strict):
    repeats: int = Field(5, ge=1, le=100)
    test_fraction: float = Field(0.25, gt=0, lt=1)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 0


class SearchTable(_Strict):
    trials: int = Field(20, ge=1)
    sampler: Literal["tpe", "random", "cmaes", "gp", "nsga2"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    #: Random start-up trials before TPE / GP model the objective. Default: a third of the
    #: trials, at most 10 (Optuna's own default), so short studies are tuned, not only sampled.
    startup_trials: int | None = Field(None, ge=1)
    #: Empty: Optuna's journal file in the results folder. Else any Optuna storage URL.
    storage: str = ""
    #: Second objective for multi-objective mode: minimise synaptic operations per sample or
    #: training time, alongside maximising the validation metric.
    minimize: Literal["", "synops", "train_seconds"] = ""


class StudySpec(_Strict):
    study: StudyTable = StudyTable()
    data: DataTable
    grid: GridTable = GridTable()
    split: SplitTable = SplitTable()
    search: SearchTable = SearchTable()
    #: ``[space.<rule>]`` overrides of a rule's default search space.
    space: dict[str, dict[str, Any]] = {}

    @property
    def multi_objective(self) -> bool:
        return bool(self.search.minimize)

    @model_validator(mode="after")
    def _space_rules(self) -> StudySpec:
        extra = set(self.space) - set(self.grid.rules)
        if extra:
            raise ValueError(
                f"[space] has tables for rules not in [grid].rules: {sorted(extra)}"
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
    """Unknown backend/rule names and search-space keys, named with what is installed."""
    from spikebench.backends.registry import available_backends
    from spikebench.harness.rules import available_rules, get_rule
    from spikebench.harness.space import merge_space

    backends, rules = available_backends(), available_rules()
    for name in spec.grid.backends:
        if name not in backends:
            raise SpecError(
                f"{source}: [grid].backends: unknown backend {name!r}; installed: "
                f"{', '.join(backends)}"
            )
    for name in spec.grid.rules:
        if name not in rules:
            raise SpecError(
                f"{source}: [grid].rules: unknown rule {name!r}; installed: {', '.join(rules)}"
            )
    for rule, overrides in spec.space.items():
        if not isinstance(overrides, dict):
            raise SpecError(f"{source}: [space.{rule}] must be a table")
        try:
            merge_space(get_rule(rule).search_space(), overrides, f"[space.{rule}]")
        except SpecError as exc:
            raise SpecError(f"{source}: {exc}") from None


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a TOML study spec."""
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
    if spec.data.path and spec.data.source != "phantom":
        p = Path(spec.data.path)
        if not p.is_absolute():  # relative to the spec file, like most tools do
            data = spec.data.model_copy(update={"path": str((path.parent / p).resolve())})
            spec = spec.model_copy(update={"data": data})
    return spec
