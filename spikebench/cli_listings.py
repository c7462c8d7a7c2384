"""``spikebench backends``, ``rules`` and ``datasets``: what is installed and what it serves.

A broken plug-in is one line (``name  broken: why``); the others are listed whatever it did.
"""

from __future__ import annotations

from spikebench.errors import SpikebenchError


def list_backends() -> None:
    """Print each backend: version, capabilities, the rules it serves, resets, surrogates."""
    from spikebench.harness.rules import installed_rules
    from spikebench.harness.rules.serving import installed_backends, rules_served

    found = installed_backends()
    rules = installed_rules().usable
    width = max(map(len, [*found.usable, *found.broken, ""])) + 2
    for name in sorted({*found.usable, *found.broken}):
        if name in found.broken:
            print(f"{name:{width}s}broken: {found.broken[name]}")
            continue
        try:
            d = found.usable[name].describe()
        except Exception as exc:  # a plug-in's version() or describe() that raises
            print(f"{name:{width}s}broken: describe() raised {type(exc).__name__}: {exc}")
            continue
        served = rules_served(found.usable[name], rules)
        print(f"{name:{width}s}{d['version']}\n{'':{width}s}builds: "
              f"{', '.join(d['capabilities'])}\n{'':{width}s}rules: {', '.join(served) or '-'}"
              f"\n{'':{width}s}resets: {', '.join(d['resets'])}; surrogates: "
              f"{', '.join(d['surrogates'])}")


def list_datasets() -> None:
    """Print each data source: its summary and its ``[data]`` option keys."""
    from spikebench.datasets.sources import available_sources, get_source

    names = available_sources()
    width = max(map(len, [*names, ""])) + 2
    for name in names:  # a broken plug-in is one line ("broken: why"), the rest are listed
        try:
            source = get_source(name)
            keys = ", ".join(source.Options.model_fields)
            summary = str(source.summary)
        except SpikebenchError as exc:
            print(f"{name:{width}s}broken: {exc}")
            continue
        except Exception as exc:  # a plug-in whose Options or summary is not what it says
            print(f"{name:{width}s}broken: {type(exc).__name__}: {exc}")
            continue
        print(f"{name:{width}s}{summary}\n{'':{width}s}[data] keys: {keys}")


def list_rules() -> None:
    """Print each rule: its summary, the capabilities it needs and the backends serving it."""
    from spikebench.harness.rules import installed_rules
    from spikebench.harness.rules.serving import installed_backends, serving_backends

    rules = installed_rules()
    backends = installed_backends().usable
    width = max(map(len, [*rules.usable, *rules.broken, ""])) + 2
    for name in sorted({*rules.usable, *rules.broken}):
        if name in rules.broken:
            print(f"{name:{width}s}broken: {rules.broken[name]}")
            continue
        rule = rules.usable[name]
        print(f"{name:{width}s}{rule.summary}")
        if not rule.needs:
            print(f"{'':{width}s}backends: none needed (non-spiking reference)")
            continue
        serve = serving_backends(rule, backends)
        line = (f"{'':{width}s}needs: {', '.join(sorted(rule.needs))}\n"
                f"{'':{width}s}backends: {', '.join(serve) or '-'}")
        cannot = [b for b in backends if b not in serve]
        if cannot:
            line += f"; not on: {', '.join(cannot)} (they lack a needed capability)"
        print(line)
