"""Any folder of audio files a user owns, as a pre-training set (16 kHz mono)."""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds
from etils import epath

from matpac_datasets import audio_builder_lib as lib


@dataclasses.dataclass(eq=False)
class AudioFolderConfig(tfds.core.BuilderConfig):
    """Which folder to read, and the shortest clip to keep.

    Attributes:
      folder: the audio folder, searched recursively; None reads the manual dir instead.
      min_seconds: shorter clips are skipped and counted. Defaults to 6.08 (a MATPAC crop).
    """

    folder: str | None = None
    min_seconds: float = lib.PRETRAIN_MIN_SECONDS


class Builder(lib.AudioBuilder):
    """Every audio file (by extension) under a folder, recursively, as one `train` split."""

    name = "matpac_audio_folder"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 16 kHz mono int16, clips >= 6.08 s."}
    BUILDER_CONFIGS = [
        AudioFolderConfig(name="manual", description="The audio files under the manual dir."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Pass a folder of your own audio files ({", ".join(lib.AUDIO_EXTENSIONS)}; any rate, bit depth
    or channel count) as manual_dir, or name it in a config:
    `Builder(config=AudioFolderConfig(name="my_audio", folder="/path/to/audio"))`.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self._audio_info(
            {"filename": tfds.features.Text(doc="path relative to the folder")},
            homepage="https://github.com/aurianworld/matpac",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        folder = self.builder_config.folder
        root = epath.Path(folder) if folder else dl_manager.manual_dir
        if not root.is_dir():
            raise FileNotFoundError(f"audio folder {root} does not exist")
        self.set_source_root(root)  # links may not leave the folder (follow_external_symlinks)
        return {"train": self._generate_examples(root)}

    def _generate_examples(self, root):
        clips = []
        for path in lib.list_audio_files(root):
            key = path.relative_to(root).as_posix()
            clips.append(lib.Clip(key=key, path=path, features={"filename": key}))
        yield from self._audio_examples(clips, "train", min_seconds=self.builder_config.min_seconds)
