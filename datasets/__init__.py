"""spikebench.datasets: MSD Task03 liver reader, synthetic phantom, per-slice feature
extraction and feature-table loading.

Modules: ``phantom`` (write_phantom), ``msd`` (read_dataset_json, Volume, iter_case_slices),
``slice_features`` (the per-slice feature maths), ``features`` (extract_features, META_COLUMNS),
``tables`` (load_feature_table, FeatureTable), ``extract_bench`` (benchmark_extraction),
``fixtures`` (write_broken_variants). Nothing here imports ``spikebench.harness``; imports are
kept out of this ``__init__`` so worker processes start light.
"""
