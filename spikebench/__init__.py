"""spikebench: a leakage-free benchmark of spiking neural network backends and learning rules.

The package is laid out along the data flow (see DESIGN.md):
``spikebench.datasets`` reads CT volumes and writes feature tables, ``spikebench.backends`` builds
spiking networks on several frameworks from one neutral spec, ``spikebench.harness`` splits,
trains, tunes (Optuna) and evaluates, ``spikebench.reports`` turns results into tables and figures.
Heavy imports (torch, frameworks) happen lazily so ``spikebench --help`` is instant.
"""

__version__ = "0.1.0"
