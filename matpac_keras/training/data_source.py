"""A run's training batches from its config, addressed by global step (so resumable).

An in-memory corpus (`inputs.InMemoryCorpus`: the one `data.source` names in `NAMED_CORPORA`,
e.g. "synthetic", the demo corpus, or one passed as the source): random crops of its log-mel,
in memory (`inputs.py`). Any other source: epochs of the tf.data pipeline over audio files or a
TFDS dataset (`audio_input.py`, TensorFlow needed), whose finished epochs' lengths are kept in
the checkpoints.
Under JAX multi-process data parallelism each process feeds its own rows of every global batch.
"""

import importlib

from absl import logging
from ml_collections import ConfigDict

from matpac_keras.training.inputs import InMemoryCorpus, RandomCropBatches, logmel_corpus

# data.source names of in-memory corpora: "module:function", the function taking the run's
# config and returning an `InMemoryCorpus`. The training loop imports no corpus module: it
# receives the corpus through this table (imported when a config names it) or as `source`.
NAMED_CORPORA = {"synthetic": "matpac_keras.demo.synthetic:pretraining_corpus"}


def in_memory_corpus(config: ConfigDict, source=None) -> InMemoryCorpus | None:
    """The in-memory corpus a run trains on: `source` if it is one; with no `source`, the
    corpus that `config.data.source` names in `NAMED_CORPORA`; else None (a file or TFDS
    source)."""
    if isinstance(source, InMemoryCorpus):
        return source
    name = config.data.source
    if source is not None or not isinstance(name, str) or name not in NAMED_CORPORA:
        return None
    module, _, function = NAMED_CORPORA[name].partition(":")
    return getattr(importlib.import_module(module), function)(config)


class TrainingData:
    """A run's source, counted (`inventory`), then its batches from a global step on, and the
    data position a checkpoint records.

    Args:
        config: the run's config (`data`, `seed`, `train.global_batch_size`).
        source: a Python object replacing `config.data.source` (an `InMemoryCorpus`, a
            `tf.data.Dataset` of TFDS-style examples, a TFDS builder or a list of audio
            files), or None.

    `inventory` (a `matpac_keras.data.inventory.Inventory`; its `summary()` is the line the
    run logs and prints) is known once constructed; call `start(metadata)` with the metadata of
    the checkpoint resumed from ({} for a fresh run) before `batches`.
    """

    def __init__(self, config: ConfigDict, source=None):
        data = config.data
        self.config = config
        self.corpus = self.stream = None
        self._source = None
        self._generator = None
        self._in_memory = in_memory_corpus(config, source)
        if self._in_memory is not None:
            from matpac_keras.data.dropped import DroppedClips
            from matpac_keras.data.inventory import Inventory

            clips = self._in_memory.num_clips
            self.inventory = Inventory(self._in_memory.description, clips, clips, DroppedClips())
        else:
            from matpac_keras.data.inventory import open_source, take_inventory

            self._source = open_source(data.source if source is None else source)
            exclude = tuple(p.strip() for p in data.exclude.split(",") if p.strip())
            self.inventory = take_inventory(self._source, data.crop_frames, data.split, exclude)
        logging.info("data: %s", self.inventory.summary())

    def start(self, metadata: dict) -> None:
        """Builds the batch source, continuing the data position of `metadata`."""
        data, config = self.config.data, self.config
        if self._in_memory is not None:
            self.corpus = logmel_corpus(self._in_memory.waveforms())
            return
        from matpac_keras.training.audio_input import AudioBatchStream

        files = self.inventory.files
        self.stream = AudioBatchStream(
            self._source if files is None else files,
            data.split,
            config.train.global_batch_size,
            data.crop_frames,
            config.seed,
            data.shuffle_buffer,
            epoch_lengths=metadata.get("epoch_lengths", ()),
            dropped=self.inventory.dropped,
            description=f"config.data.source {self.inventory.description}",
            logmel_in_step=data.logmel_in_step,
        )

    @property
    def error(self):
        """The InputError the input pipeline failed with, or None."""
        return None if self.stream is None else self.stream.error

    def batches(self, start_step: int, num_steps: int):
        """Input for `fit`: batches `start_step, ..., start_step + num_steps - 1`."""
        if self.stream is not None:
            batches = self._generator = self.stream.batches(start_step)
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
            batches = ((dataset[i],) for i in range(len(dataset)))
        return ((batch[rows],) for (batch,) in batches)

    def close(self) -> None:
        """Stops the input pipeline (its tf.data iterator and threads) if it is suspended."""
        if self._generator is not None:
            try:
                self._generator.close()
            except ValueError:  # running in a tf.data thread (TensorFlow): it ends with it
                pass
            self._generator = None

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
