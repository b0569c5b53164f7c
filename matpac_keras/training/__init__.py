"""Pretraining runs from config files (`matpac-train`): the pieces of `loop.train`.

- `experiment`: config -> checks, seeds, step budget, pretrainer, optimizer.
- `data_source`, `inputs`, `audio_input`: batches addressed by global step (resumable).
- `callbacks`, `metrics_log`, `tensorboard`: metrics.jsonl, TensorBoard, divergence stop.
- `checkpoint`: the whole state of a run in one atomically written file.
- `audioset_finetune`: `matpac-finetune`'s AudioSet recipe, a run of the same kind (steps,
  checkpoints, resumption) whose model is a classifier.
This file imports nothing (`audio_input`, `tensorboard` and `audioset_finetune` import
TensorFlow).
"""
