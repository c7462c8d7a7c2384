"""Study specs for tests: one small, fast spec on a feature table, varied key by key.

``tiny_spec(table, search={"trials": 4})`` returns TOML text; keys given per table replace the
defaults, ``None`` removes one. Pass ``table="{table}"`` to keep a placeholder for
``str.format``.
"""

from __future__ import annotations

import json
from typing import Any

DEFAULTS: dict[str, dict[str, Any]] = {
    "study": {"name": "tiny", "references": ["logistic_regression"], "eval_steps": [1.0]},
    "data": {"source": "table"},
    "grid": {"backends": ["custom"], "rules": ["surrogate"]},
    "split": {"scheme": "holdout", "repeats": 2},
    "search": {"trials": 3},
    "space.surrogate": {"epochs": 4, "hidden": 16, "steps": 6, "encoding": "direct"},
}


def tiny_spec(table: Any, **tables: dict[str, Any]) -> str:
    """The TOML of a one-cell study (custom/surrogate, direct encoding, a few epochs) on the
    feature table ``table``; ``tables`` update the defaults per TOML table (use the key
    ``space_surrogate`` for ``[space.surrogate]``)."""
    merged = {name: dict(values) for name, values in DEFAULTS.items()}
    merged["data"]["path"] = str(table)
    for name, values in tables.items():
        target = merged.setdefault(name.replace("_", ".", 1) if name.startswith("space_")
                                   else name, {})
        for key, value in values.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
    lines = []
    for name, values in merged.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"
