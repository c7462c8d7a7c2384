"""What the documentation shows a user runs: the rule plug-in of docs/plugins.md conforms."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _snippet(marker: str) -> str:
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```\n<!-- /{marker} -->", text, re.S)
    assert found, f"docs/plugins.md lost its {marker} snippet"
    return found.group(1)


def test_the_rule_of_the_plugin_guide_passes_check_rule(monkeypatch):
    """Copied into a module as a reader would, the guide's rule runs on every backend that
    provides what it needs, with the validation labels hidden (the whole kit)."""
    from spikebench.harness.rules.conformance import check_rule

    module = types.ModuleType("guide_rule")
    monkeypatch.setitem(sys.modules, "guide_rule", module)
    exec(compile(_snippet("rule-example"), "docs/plugins.md", "exec"), module.__dict__)
    rule = module.SpikeCount()
    out = check_rule(rule, params={"hidden": 16, "steps": 4, "epochs": 2})
    assert {"custom", "snntorch", "spikingjelly"} <= set(out)
