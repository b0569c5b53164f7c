"""Tagging audio files with a classifier: per clip, the probability of every label.

`tag_files` scores files with a `MatpacAudioClassifier` (the authors' AudioSet tagger or probe
heads converted by `matpac-convert`, or `matpac-finetune`'s classifier) exactly as
`MatpacAudioClassifier.clip_logits` does: the classifier's `clip_extractor` embeds each file
(`file_embeddings.embed_files`: headers first, long files streamed), its head gives logits, and
`probabilities` turns them into probabilities, by default a sigmoid for a multi-label model and
a softmax otherwise (the authors' choice for every head, with which the probabilities equal
theirs). `Tags` holds the result and writes it as `matpac-tag` does: a table, JSON (top-k per
clip) or `.npz` (every class). The classifier may also be a `numpy_classifier.NumpyClassifier`
(its head in NumPy on an exported encoder): then no Keras is imported.
"""

import dataclasses
import json

import numpy as np

from matpac_keras.errors import InputError
from matpac_keras.file_embeddings import (
    NonFiniteError,
    check_finite,
    embed_files,
    skipped_arrays,
)
from matpac_keras.head_labels import top_k_labels


@dataclasses.dataclass(frozen=True)
class Tags:
    """Label probabilities of tagged files.

    files: the N files tagged, in input order (skipped ones left out).
    labels: the K class names, in the classifier's output order.
    probabilities: float32 [N, K].
    activation: "sigmoid" or "softmax", how logits became probabilities.
    skipped: {input index: (path, why)} of files left out (`skip_errors`).
    """

    files: tuple[str, ...]
    labels: tuple[str, ...]
    probabilities: np.ndarray
    activation: str
    skipped: dict[int, tuple[str, str]] = dataclasses.field(default_factory=dict)

    def top(self, k: int) -> list[list[tuple[str, float]]]:
        """Per file, the `k` most probable (label, probability) pairs, most probable first (ties
        in output order)."""
        return top_k_labels(self.probabilities, self.labels, k)

    def table(self, k: int) -> str:
        """A readable table: each file, then its top-`k` probabilities and labels."""
        lines = []
        for path, top in zip(self.files, self.top(k), strict=True):
            lines.append(path)
            lines += [f"  {probability:6.3f}  {label}" for label, probability in top]
        return "\n".join(lines)

    def to_json(self, k: int) -> list[dict]:
        """`[{"file", "labels", "probabilities"}]`: each file's top-`k`, most probable first."""
        return [
            {
                "file": path,
                "labels": [label for label, _ in top],
                "probabilities": [p for _, p in top],
            }
            for path, top in zip(self.files, self.top(k), strict=True)
        ]

    def npz_arrays(self) -> dict[str, np.ndarray]:
        """`files` [N], `labels` [K], `probabilities` [N, K] (every class), `activation`, and
        the `skipped` files and their `errors` when any was skipped."""
        out = {
            "files": np.array(self.files, dtype=str),
            "labels": np.array(self.labels, dtype=str),
            "probabilities": self.probabilities,
            "activation": np.array(self.activation),
        }
        if self.skipped:
            out.update(skipped_arrays(self.skipped))
        return out

    def write(self, path, k: int, fmt: str) -> None:
        """Writes `to_json(k)` (`fmt` "json") or `npz_arrays()` (`fmt` "npz") to `path`."""
        if fmt not in ("json", "npz"):
            raise ValueError(f"fmt must be 'json' or 'npz'; got {fmt!r}")
        if fmt == "json":
            with open(path, "w", encoding="utf-8") as file:
                json.dump(self.to_json(k), file, indent=1, ensure_ascii=False)
                file.write("\n")
        else:
            with open(path, "wb") as file:
                np.savez(file, **self.npz_arrays())


def tag_files(
    classifier,
    paths: list[str],
    activation: str | None = None,
    crop_frames: int | None = None,
    batch_size: int = 16,
    skip_errors: bool = False,
    progress=None,
) -> Tags:
    """The label probabilities of audio files (any length, decoded and resampled to 16 kHz).

    Args:
        classifier: MatpacAudioClassifier (or NumpyClassifier).
        paths: audio files.
        activation: "sigmoid" or "softmax"; default: sigmoid for a `multi_label` classifier,
            else softmax.
        crop_frames: None (the classifier's own way: its `crop_frames`, else the precise clip
            embedding) or crops of that many frames (`MatpacAudioClassifier.clip_extractor`).
        batch_size: chunks (and clip embeddings) processed at once.
        skip_errors: leave out unreadable files (recorded in `Tags.skipped`) instead of raising.
        progress: None or a callable given the number of files done since its last call.

    Raises:
        AudioError: naming the file, a missing, unreadable or truncated one (without
            `skip_errors`: before any file is embedded).
        NonFiniteError: naming the file, an embedding or probabilities holding NaN or Inf
            (with `skip_errors`, the file is recorded in `Tags.skipped` with that reason).
        InputError: no readable file at all.
    """
    extractor = classifier.clip_extractor(crop_frames, batch_size)
    results, skipped = embed_files(extractor, paths, skip_errors, progress=progress)
    if not results:
        raise InputError(f"no readable audio among the {len(paths)} files given")
    kept = sorted(results)
    embeddings = np.stack([results[i].embedding for i in kept])
    logits = np.concatenate(
        [
            _numpy(classifier.classify(embeddings[i : i + batch_size], False))
            for i in range(0, len(embeddings), batch_size)
        ]
    )
    activation = activation or classifier.head_labels().activation
    probabilities = np.asarray(classifier.probabilities(logits, activation))
    finite = []
    for row, i in enumerate(kept):
        try:
            check_finite(paths[i], "probabilities", probabilities[row])
            finite.append(row)
        except NonFiniteError as error:
            if not skip_errors:
                raise
            skipped[i] = (paths[i], str(error))
    if not finite:
        raise InputError(f"no file among the {len(paths)} given has finite probabilities")
    return Tags(
        files=tuple(paths[kept[row]] for row in finite),
        labels=classifier.label_names,
        probabilities=probabilities[finite],
        activation=activation,
        skipped=dict(sorted(skipped.items())),
    )


def _numpy(array) -> np.ndarray:
    """A backend's tensor (or a NumPy array, as it is) as a NumPy array."""
    if isinstance(array, np.ndarray):
        return array
    from keras import ops

    return ops.convert_to_numpy(array)
