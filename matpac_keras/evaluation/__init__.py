"""Downstream evaluation: linear probe (paper and EVAR protocols), metrics, fine-tuning.

Backend-generic: metrics, statistics, tasks, probe, protocol, report, features, baselines,
classifier, layerwise, finetune_data, logistic_regression (the demo's probe).
TensorFlow-only (they read TFDS): tfds_source, runner, finetune.
"""
