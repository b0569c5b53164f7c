"""Pretraining runs from config files (`matpac-train`): the pieces of `loop.train`.

- `experiment`: config -> checks, seeds, step budget, pretrainer, optimizer.
- `data_source`, `inputs`, `audio_input`: batches addressed by global step (resumable).
- `callbacks`, `metrics_log`, `tensorboard`: metrics.jsonl, TensorBoard, divergence stop.
- `checkpoint`: the whole state of a run in one atomically written file.
This file imports nothing (`audio_input` and `tensorboard` import TensorFlow).
"""
