"""The temporal-support flags of matpac-embed, matpac-export and matpac-evaluate.

    --temporal_support=2 --hop=1 --aggregate=mean

Windows of --temporal_support seconds, one every --hop seconds, each encoded on its own, its
tokens averaged over time; the window embeddings aggregated over the clip
(`EmbeddingExtractor`). Both are rounded to the nearest whole number of patch columns (16
log-mel frames, 0.16 s; halves up): 0.5 s is 48 frames (0.48 s), 1 s 96 (0.96 s), 2 s 208
(2.08 s), 6.08 s 608.
"""

import sys

from absl import app, flags

# `embedding.AGGREGATES` (tests/cli/embed_output_test.py checks it): this module is imported
# before Keras is, which matpac-export must import under KERAS_BACKEND=tensorflow.
AGGREGATES = ("mean", "max", "mean+max")

TEMPORAL_SUPPORT_HELP = (
    "Seconds of audio per embedding window: from 0.16 s (one 16-frame patch column) up to the "
    "model's max_frames (6.08 s for the paper's model), rounded to the nearest whole number of "
    "columns (0.5 -> 0.48 s, 1 -> 0.96 s, 2 -> 2.08 s). Default: the model's max_frames "
    "(precise mode's chunks)."
)
HOP_HELP = (
    "Seconds from one window's start to the next, rounded likewise, from 0.16 s up to "
    "--temporal_support. Default: --temporal_support (no overlap)."
)
AGGREGATE_HELP = (
    "Window embeddings -> clip embedding: mean (over all windows' time steps; with the default "
    "hop, precise mode's), max (element-wise, of the windows' means) or mean+max (both, "
    "concatenated: twice the width)."
)


def define_window_flags(module_name: str, sweep: bool = False) -> None:
    """Defines --temporal_support, --hop and --aggregate for the CLI `module_name` (so that its
    --help lists them); with `sweep`, --temporal_support and --hop take comma-separated lists."""
    if module_name == "__main__":  # run as `python -m`: absl names the module by its file
        module_name = sys.argv[0]
    if sweep:
        flags.DEFINE_list(
            "temporal_support",
            None,
            "Comma-separated temporal supports to sweep, e.g. 0.5,1,2,4,6.08. "
            + TEMPORAL_SUPPORT_HELP,
            module_name=module_name,
        )
        flags.DEFINE_list(
            "hop",
            None,
            "One hop for every temporal support, or one per temporal support. " + HOP_HELP,
            module_name=module_name,
        )
    else:
        flags.DEFINE_float("temporal_support", None, TEMPORAL_SUPPORT_HELP, module_name=module_name)
        flags.DEFINE_float("hop", None, HOP_HELP, module_name=module_name)
    flags.DEFINE_enum("aggregate", "mean", AGGREGATES, AGGREGATE_HELP, module_name=module_name)


def check_window_flags(backbone, temporal_support, hop) -> tuple[int, int]:
    """(window, hop) frames of the flags' values for `backbone`; app.UsageError naming the flag
    for a value out of range."""
    from matpac_keras.numpy_embedding import window_frames

    try:
        return window_frames(backbone, temporal_support, hop, prefix="--")
    except ValueError as error:
        raise app.UsageError(str(error)) from None
