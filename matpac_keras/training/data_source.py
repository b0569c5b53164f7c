"""A run's training batches from its config, addressed by global step (so resumable).

`data.source = "synthetic"`: random crops of the demo corpus, in memory (`inputs.py`). Any other
source: epochs of the tf.data pipeline over audio files or a TFDS dataset (`audio_input.py`,
TensorFlow needed), whose finished epochs' lengths are kept in the checkpoints.
Under JAX multi-process data parallelism each process feeds its own rows of every global batch.
"""

from ml_collections import ConfigDict

from matpac_keras.training.experiment import SYNTHETIC
from matpac_keras.training.inputs import RandomCropBatches, logmel_corpus


class TrainingData:
    """Batches from a global step on, and the data position a checkpoint records.

    Args:
        config: the run's config (`data`, `seed`, `train.global_batch_size`).
        metadata: the metadata of the checkpoint resumed from ({} for a fresh run).
    """

    def __init__(self, config: ConfigDict, metadata: dict):
        data = config.data
        self.config = config
        self.corpus = self.stream = None
        if data.source == SYNTHETIC:
            from matpac_keras.demo.synthetic import make_corpus

            waveforms, _ = make_corpus(
                data.synthetic.clips_per_class, data.synthetic.seconds, config.seed
            )
            self.corpus = logmel_corpus(waveforms)
        else:
            from matpac_keras.training.audio_input import AudioBatchStream

            self.stream = AudioBatchStream(
                data.source,
                data.split,
                config.train.global_batch_size,
                data.crop_frames,
                config.seed,
                data.shuffle_buffer,
                epoch_lengths=metadata.get("epoch_lengths", ()),
            )

    def batches(self, start_step: int, num_steps: int):
        """Input for `fit`: batches `start_step, ..., start_step + num_steps - 1`."""
        if self.stream is not None:
            batches = self.stream.batches(start_step)
        else:
            batches = RandomCropBatches(
                self.corpus,
                self.config.train.global_batch_size,
                self.config.data.crop_frames,
                self.config.seed,
                start_step,
                num_steps,
            )
        rows = process_rows(self.config)
        if rows is None:
            return batches
        if isinstance(batches, RandomCropBatches):
            dataset = batches
            batches = (dataset[i] for i in range(len(dataset)))
        return (batch[rows] for batch in batches)

    def position(self, step: int) -> dict:
        """What a checkpoint at `step` records about the data."""
        if self.stream is None:
            return {"data_position": {"step": step}}
        epoch, batch = self.stream.position(step)
        return {
            "data_position": {"epoch": epoch, "batch": batch},
            "epoch_lengths": list(self.stream.epoch_lengths),
        }


def process_rows(config: ConfigDict) -> slice | None:
    """This process's rows of a global batch under multi-process JAX `data_parallel` (Keras
    then expects each process to feed its own part); None when one process feeds it all.

    Every process draws the same global batch (the draws depend on seed and step only) and
    keeps its slice, so N processes see the batches a single one would.
    """
    if config.train.distribution != "data_parallel":
        return None
    import jax

    count, batch = jax.process_count(), config.train.global_batch_size
    if count == 1:
        return None
    if batch % count:
        raise ValueError(
            f"config.train.global_batch_size={batch} must be a multiple of the {count} processes"
        )
    index, size = jax.process_index(), batch // count
    return slice(index * size, (index + 1) * size)
