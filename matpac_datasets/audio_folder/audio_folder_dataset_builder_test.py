"""Tests of the audio-folder builder: dummy_data/, and a folder of awkward and broken files."""

import pathlib
import tempfile

import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds

from matpac_datasets import builder_testing
from matpac_datasets.audio_folder import audio_folder_dataset_builder as audio_folder
from matpac_keras import audio

pytestmark = pytest.mark.single_backend  # TensorFlow-only: run once, not per Keras backend

SECONDS = 6.5  # above the 6.08 s pre-training minimum
# name: (rate, subtype, per-channel (amplitude, frequency)); all convertible.
GOOD = {
    "pcm16_16k.wav": (16000, "PCM_16", [(0.5, 440.0)]),
    "pcm24_44k.wav": (44100, "PCM_24", [(0.4, 1000.0)]),
    "u8_8k.wav": (8000, "PCM_U8", [(0.6, 300.0)]),
    "float_22k.wav": (22050, "FLOAT", [(0.7, 2500.0)]),
    "stereo_48k.flac": (48000, "PCM_16", [(0.5, 500.0), (0.2, 3000.0)]),
    "odd_rate_12345.wav": (12345, "PCM_16", [(0.3, 700.0)]),
    "sub/dir/upper_case.WAV": (16000, "PCM_16", [(0.25, 200.0)]),
}
TOLERANCE = {"PCM_U8": 0.012}  # 8-bit quantisation; 2e-3 otherwise


def sines(rate, channels, seconds=SECONDS):
    t = np.arange(round(seconds * rate)) / rate
    return np.stack([a * np.sin(2 * np.pi * f * t) for a, f in channels], axis=1)


def expected_16k(channels, n):
    """The analytic 16 kHz mono signal: the mean of the channels' sines."""
    return sines(16000, channels, n / 16000).mean(axis=1)


def write_bad_input_folder(root: pathlib.Path):
    for name, (rate, subtype, channels) in GOOD.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / name, sines(rate, channels), rate, subtype=subtype)
    # A 10 s WAV cut after 7 s of data: libsndfile would read the 7 seconds present, but its
    # header declares 10 s, so it is refused as truncated.
    sf.write(root / "truncated.wav", sines(16000, [(0.5, 440.0)], 10.0), 16000, subtype="PCM_16")
    data = (root / "truncated.wav").read_bytes()
    (root / "truncated.wav").write_bytes(data[: 44 + 2 * 16000 * 7])
    # A FLAC cut mid-stream: its header still claims 10 s.
    sf.write(root / "truncated.flac", sines(16000, [(0.5, 440.0)], 10.0), 16000)
    data = (root / "truncated.flac").read_bytes()
    (root / "truncated.flac").write_bytes(data[: len(data) * 6 // 10])
    (root / "empty.wav").write_bytes(b"")
    (root / "corrupt.ogg").write_bytes(b"OggS" + np.random.default_rng(0).bytes(2000))
    nan = sines(16000, [(0.5, 440.0)], 7.0).astype(np.float32)
    nan[5000:6000] = np.nan
    sf.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(root / "short.wav", sines(16000, [(0.5, 440.0)], 2.0), 16000, subtype="PCM_16")
    (root / "notes.txt").write_text("not audio\n")


class AudioFolderTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = audio_folder.Builder
    SPLITS = {"train": 2}  # + a 1 s clip (too short), an empty and a corrupt file: skipped

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._bad_dir = tempfile.TemporaryDirectory()
        cls.bad_dir = pathlib.Path(cls._bad_dir.name)
        write_bad_input_folder(cls.bad_dir)

    @classmethod
    def tearDownClass(cls):
        cls._bad_dir.cleanup()
        super().tearDownClass()

    def _build(self, folder, **kwargs):
        config = audio_folder.AudioFolderConfig(name="test_folder", folder=str(folder))
        return builder_testing.prepare(
            self.DATASET_CLASS, None, self.tmp_dir, config=config, **kwargs
        )

    def test_dummy_data_skips(self):
        builder = builder_testing.prepare(self.DATASET_CLASS, self.dummy_data, self.tmp_dir)
        self.assertEqual(
            builder.info.metadata["skipped"], {"train": {"too_short": 1, "bad_audio": 2}}
        )
        self.assertEqual(
            sorted((s.key, s.reason) for s in builder.skipped),
            [
                ("empty.wav", "bad_audio"),
                ("short.wav", "too_short"),
                ("speech/corrupt.mp3", "bad_audio"),
            ],
        )

    def test_bad_input_is_converted_or_skipped(self):
        builder = self._build(self.bad_dir)
        written = builder_testing.examples(builder, "train")
        for name, (_, subtype, channels) in GOOD.items():
            stored = written.pop(name)["audio"]
            self.assertEqual(stored.dtype, np.int16)
            self.assertLessEqual(abs(len(stored) - round(SECONDS * 16000)), 1, name)
            want = expected_16k(channels, len(stored))
            err = np.abs(stored[200:-200] / 32768.0 - want[200:-200]).max()
            self.assertLess(err, TOLERANCE.get(subtype, 2e-3), name)
        # Nothing else was written: the rest were skipped with a counted, named reason.
        self.assertEqual(written, {})
        reasons = {s.key: s.reason for s in builder.skipped}
        self.assertEqual(
            reasons,
            {
                "corrupt.ogg": "bad_audio",
                "empty.wav": "bad_audio",
                "nan.wav": "bad_audio",
                "truncated.flac": "bad_audio",
                "truncated.wav": "bad_audio",
                "short.wav": "too_short",
            },
        )
        for skipped in builder.skipped:
            self.assertIn(skipped.key, skipped.message)
        (truncated,) = [s for s in builder.skipped if s.key == "truncated.wav"]
        self.assertIn("truncated: header declares 160000 frames, 112000 present", truncated.message)
        self.assertEqual(
            builder.info.metadata["skipped"], {"train": {"bad_audio": 5, "too_short": 1}}
        )
        reloaded = self.DATASET_CLASS(data_dir=self.tmp_dir, config=builder.builder_config)
        self.assertEqual(reloaded.info.metadata["skipped"]["train"]["bad_audio"], 5)

    def test_strict_mode_raises_naming_the_file(self):
        with pytest.raises(audio.AudioError, match="corrupt.ogg"):
            self._build(self.bad_dir, skip_bad_files=False)

    def test_strict_mode_still_drops_short_clips(self):
        folder = pathlib.Path(self.tmp_dir) / "ok"
        folder.mkdir()
        for name in ("pcm16_16k.wav", "short.wav"):
            (folder / name).write_bytes((self.bad_dir / name).read_bytes())
        builder = self._build(folder, skip_bad_files=False)
        self.assertEqual(builder.info.splits["train"].num_examples, 1)
        self.assertEqual(builder.info.metadata["skipped"], {"train": {"too_short": 1}})

    def test_min_seconds_config(self):
        config = audio_folder.AudioFolderConfig(
            name="any_length", folder=str(self.bad_dir), min_seconds=0.0
        )
        builder = builder_testing.prepare(self.DATASET_CLASS, None, self.tmp_dir, config=config)
        self.assertIn("short.wav", builder_testing.examples(builder, "train"))

    def _linked_folders(self):
        """manual/: a file, a link to it, a link into a linked sub-folder, and a link out to
        outside/secret.wav; returns (manual, outside file)."""
        base = pathlib.Path(self.tmp_dir) / "links"
        manual, outside = base / "manual", base / "outside"
        (manual / "real").mkdir(parents=True)
        outside.mkdir()
        good = self.bad_dir / "pcm16_16k.wav"
        (manual / "real" / "clip.wav").write_bytes(good.read_bytes())
        (outside / "secret.wav").write_bytes(good.read_bytes())
        (manual / "inside_link.wav").symlink_to("real/clip.wav")
        (manual / "outside_link.wav").symlink_to(outside / "secret.wav")
        (manual / "relative_escape.wav").symlink_to("../outside/secret.wav")
        return manual, outside / "secret.wav"

    def test_links_leaving_the_manual_dir_are_skipped(self):
        manual, secret = self._linked_folders()
        builder = builder_testing.prepare(self.DATASET_CLASS, manual, self.tmp_dir)
        written = builder_testing.examples(builder, "train")
        self.assertEqual(sorted(written), ["inside_link.wav", "real/clip.wav"])
        np.testing.assert_array_equal(
            written["inside_link.wav"]["audio"], written["real/clip.wav"]["audio"]
        )
        self.assertEqual(builder.info.metadata["skipped"], {"train": {"external_symlink": 2}})
        for skipped in builder.skipped:
            self.assertIn(f"a symbolic link to {secret}", skipped.message)
            self.assertIn("follow_external_symlinks=True", skipped.message)
        # Strict mode refuses bad files, not this policy: the links are skipped the same way.
        strict = builder_testing.prepare(
            self.DATASET_CLASS, manual, pathlib.Path(self.tmp_dir) / "strict", skip_bad_files=False
        )
        self.assertEqual(strict.info.metadata["skipped"], {"train": {"external_symlink": 2}})

    def test_follow_external_symlinks(self):
        manual, _ = self._linked_folders()
        config = audio_folder.AudioFolderConfig(name="linked", folder=str(manual))
        builder = builder_testing.prepare(
            self.DATASET_CLASS, None, self.tmp_dir, config=config, follow_external_symlinks=True
        )
        written = builder_testing.examples(builder, "train")
        self.assertEqual(len(written), 4)
        self.assertEqual(builder.info.metadata["skipped"], {"train": {}})
        # A manual dir that is itself a link is resolved first: its files are inside it.
        alias = manual.parent / "alias"
        alias.symlink_to(manual, target_is_directory=True)
        self.addCleanup(alias.unlink)  # the temporary folder's removal would follow it
        config = audio_folder.AudioFolderConfig(name="aliased", folder=str(alias))
        builder = builder_testing.prepare(self.DATASET_CLASS, None, self.tmp_dir, config=config)
        self.assertEqual(len(builder_testing.examples(builder, "train")), 2)

    def test_instructions_state_the_link_policy(self):
        self.assertIn(
            "follow_external_symlinks=True", self.DATASET_CLASS.MANUAL_DOWNLOAD_INSTRUCTIONS
        )
