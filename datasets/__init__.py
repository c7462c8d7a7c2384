"""spikebench.datasets: MSD Task03 liver reader, synthetic phantom, per-slice feature
extraction and feature-table loading.

Modules: ``phantom`` (write_phantom), ``msd`` (read_dataset_json, Volume, VolumeLimits,
iter_case_slices), ``slice_features`` (the per-slice feature maths), ``features``
(extract_features, META_COLUMNS), ``tables`` (load_feature_table, FeatureTable),
``extract_bench`` (benchmark_extraction), ``sources`` (the DataSource plug-ins). Broken
example inputs for tests live in ``tests/datasets/broken_inputs.py``, outside the installed
package. Nothing here imports ``spikebench.harness``; imports are kept out of this
``__init__`` so worker processes start light.
"""
