"""Downstream evaluation: linear probe (paper and EVAR protocols), metrics, fine-tuning.

Backend-generic: metrics, statistics, tasks, probe, protocol, report, features, baselines,
classifier, layerwise, finetune_data, balanced_sampling, finetune_stream, logistic_regression
(the demo's probe).
TensorFlow-only (they read TFDS): tfds_source, audioset_source, runner, finetune. The AudioSet
fine-tuning run, resumable like pretraining, is `matpac_keras.training.audioset_finetune`.
"""
