"""The authors' published checkpoints: what each file is and the architecture it holds.

`matpac-convert` looks a checkpoint up here by its file name, so converting one needs no
architecture flags, and checks the tensors it reads against the entry (a renamed or different
file is converted from its own shapes, as any other). The files are in the releases of
github.com/aurianworld/matpac ("Initial_release" and "Probes_weights"); nothing here downloads
them.

Every published encoder is a ViT-Base: D=768, 12 blocks of 12 heads, 16x16 patches over an
80-mel log-mel. `max_frames` is the length of its position grid (608 frames = 6.08 s for the
self-supervised models, 992 = 9.92 s for the AudioSet fine-tuned one, SPEC sections 8 and 9).
"""

from dataclasses import dataclass

RELEASE_URL = "https://github.com/aurianworld/matpac/releases/download"


@dataclass(frozen=True)
class PublishedCheckpoint:
    """One published file. `preset` is the name of its converted preset directory."""

    file: str
    preset: str
    description: str
    release: str
    variant: str = "base"
    max_frames: int = 608
    with_head: bool = False

    @property
    def url(self) -> str:
        return f"{RELEASE_URL}/{self.release}/{self.file}"


PUBLISHED_CHECKPOINTS = {
    c.file: c
    for c in (
        PublishedCheckpoint(
            "matpac_10_2048.pt",
            "matpac_base_audioset",
            "MATPAC (ICASSP 2025), self-supervised on AudioSet",
            "Initial_release",
        ),
        PublishedCheckpoint(
            "matpac_plus_6s_2048_enconly.pt",
            "matpac_plus_base_audioset",
            "MATPAC++, self-supervised on AudioSet (encoder only)",
            "Initial_release",
        ),
        PublishedCheckpoint(
            "matpac_plus_music_6s_2048_enconly.pt",
            "matpac_plus_base_music",
            "MATPAC++, self-supervised on music (encoder only)",
            "Initial_release",
        ),
        PublishedCheckpoint(
            "matpac_plus_as_48_1_map_enconly.pt",
            "matpac_plus_base_audioset_finetuned",
            "MATPAC++, self-supervised then fine-tuned on AudioSet (encoder only)",
            "Initial_release",
            max_frames=992,
        ),
        PublishedCheckpoint(
            "matpac_plus_as_48_1_map_enc_and_head.pt",
            "matpac_plus_base_audioset_tagger",
            "MATPAC++, fine-tuned on AudioSet, encoder and 527-class head",
            "Initial_release",
            max_frames=992,
            with_head=True,
        ),
    )
}
PROBE_RELEASE = f"{RELEASE_URL}/Probes_weights/Weights_probes_matpac.zip"


def published_checkpoint(path: str) -> PublishedCheckpoint | None:
    """The entry for a checkpoint file (looked up by its base name), or None."""
    return PUBLISHED_CHECKPOINTS.get(path.replace("\\", "/").rsplit("/", 1)[-1])
