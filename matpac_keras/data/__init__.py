"""tf.data input pipelines (TensorFlow-only: tf.data, TFDS and tf.numpy_function).

Their output is what every Keras backend's `fit` and `predict` accept (Keras converts tf.data
batches to JAX or PyTorch arrays), but the modules import TensorFlow. Import them directly: this
file imports nothing, so the generated Bazel targets have no package <-> module cycle.

- `pretraining.pretraining_dataset`: shuffled clips -> random 608-frame crops -> normalised
  log-mel batches [B, 80, 608] (x only), or the cropped waveforms (`logmel_in_pipeline=False`).
- `sources`: folders, file lists, TFDS builders and datasets as a pipeline's input.
- `dropped.DroppedClips`: the clips a pipeline skipped (too short, undecodable), counted, logged.

Where the log-mel is computed, decided by measurement (benchmarks/pipeline.md): on the
accelerator, for pre-training on GPUs. On one CPU core `LogMelSpectrogram` costs 2.5-2.8 ms per
608-frame crop, while reading and cropping a clip from TFDS int16 records costs 0.6-0.7 ms: the
log-mel is 75-90% of the pipeline's CPU time, and feeding 4,000 clips/s (one H100) takes ~11-21
cores with it in tf.data against ~2.5 without (~21 against ~10 from 16 kHz wav files). On the
accelerator it is ~26 MFLOP and ~6 MB of memory traffic per crop, ~0.03% of the ~100 GFLOP of a
ViT-B MATPAC training step per clip (estimated from FLOPs: no GPU here to measure it), for twice
the bytes to copy to the device (float32 waveform crops, 1.6 GB/s at 4,000 clips/s). So train
with `logmel_in_pipeline=False` and the log-mel in the model: `MatpacPretrainer` takes waveform
batches and computes their log-mel inside its step (`config.data.logmel_in_step=True` in
`matpac-train`). The default stays `True`: on a CPU-only run both places cost the same CPU.
"""
