"""benchmarks/corpora/gm_notes.py: the MIDI writer's bytes, the note plan, the split loader and
(where fluidsynth and the GM SoundFont are installed; CI has neither) a real 3-note render."""

import collections
import csv
import pathlib
import shutil
import struct

import numpy as np
import pytest
import soundfile as sf
from ml_collections import ConfigDict

from benchmarks.corpora import gm_notes
from matpac_keras.errors import InputError

pytestmark = pytest.mark.single_backend

has_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not pathlib.Path(gm_notes.DEFAULT_SOUNDFONT).is_file(),
    reason=f"needs fluidsynth and {gm_notes.DEFAULT_SOUNDFONT} (apt: {gm_notes.APT_PACKAGES})",
)


def _read_variable_length(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    while True:
        byte = data[at]
        at += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, at


def test_variable_length_quantities():
    cases = {0: b"\x00", 0x7F: b"\x7f", 0x80: b"\x81\x00", 1320: b"\x8a\x28", 0x3FFF: b"\xff\x7f"}
    for value, encoded in cases.items():
        assert gm_notes._variable_length(value) == encoded
        assert _read_variable_length(encoded, 0) == (value, len(encoded))


def test_midi_file_chunks_and_events():
    data = gm_notes.midi_file(56, 60, 100, hold_seconds=2.75, total_seconds=4.0)
    assert data[:4] == b"MThd"
    length, fmt, tracks, division = struct.unpack(">IHHH", data[4:14])
    assert (length, fmt, tracks, division) == (6, 0, 1, 480)
    assert data[14:18] == b"MTrk"
    (track_length,) = struct.unpack(">I", data[18:22])
    assert track_length == len(data) - 22  # the track chunk runs to the end of the file
    track, at, tick, events = data[22:], 0, 0, []
    while at < len(track):
        delta, at = _read_variable_length(track, at)
        tick += delta
        status = track[at]
        if status == 0xFF:
            kind = track[at + 1]
            size, at = _read_variable_length(track, at + 2)
            events.append((tick, "meta", kind, track[at : at + size]))
            at += size
        elif status & 0xF0 == 0xC0:
            events.append((tick, "program", track[at + 1]))
            at += 2
        else:
            events.append((tick, status & 0xF0, track[at + 1], track[at + 2]))
            at += 3
    ticks_per_second = 480 * 1_000_000 / 500_000  # 960 at 120 bpm
    assert events == [
        (0, "meta", 0x51, (500_000).to_bytes(3, "big")),
        (0, "program", 56),
        (0, 0x90, 60, 100),
        (round(2.75 * ticks_per_second), 0x80, 60, 0),
        (round(4.0 * ticks_per_second), "meta", 0x2F, b""),
    ]


def test_midi_file_rejects_out_of_range_values():
    with pytest.raises(ValueError, match="pitch 128"):
        gm_notes.midi_file(0, 128, 100)


def test_plan_is_deterministic_balanced_and_holds_out_pitches():
    notes = gm_notes.plan(0)
    assert notes == gm_notes.plan(0) and notes != gm_notes.plan(1)
    assert len({note.file for note in notes}) == len(notes) == 1000
    per_split = collections.Counter((note.split, note.family_index) for note in notes)
    assert set(per_split) == {(s, f) for s in gm_notes.SPLITS for f in range(10)}
    assert all(per_split["train", f] == 80 and per_split["test", f] == 20 for f in range(10))
    for family in gm_notes.FAMILIES:
        pitches = {
            split: {n.pitch for n in notes if n.family == family.name and n.split == split}
            for split in gm_notes.SPLITS
        }
        assert not pitches["train"] & pitches["test"]
        assert {n.program for n in notes if n.family == family.name} == set(family.programs)
    assert notes[0].file.startswith("train/piano_p000_n")
    for program, ceiling in gm_notes.PROGRAM_CEILINGS.items():
        assert max(n.pitch for n in notes if n.program == program) <= ceiling


def test_resume_refuses_files_the_plan_does_not_make(monkeypatch, tmp_path):
    monkeypatch.setattr(gm_notes, "check_tools", lambda soundfont: "fluidsynth")
    (tmp_path / "corpus.partial" / "train").mkdir(parents=True)
    (tmp_path / "corpus.partial" / "train" / "piano_p000_n001_v001.wav").write_bytes(b"")
    with pytest.raises(SystemExit, match="holds 1 files this plan does not make"):
        gm_notes.render_corpus(tmp_path / "corpus", gm_notes.plan(0)[:2], progress=None)


def test_missing_fluidsynth_names_the_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(gm_notes.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="apt-get install -y fluidsynth fluid-soundfont-gm"):
        gm_notes.check_tools(tmp_path / "none.sf2")


def _fake_corpus(root: pathlib.Path) -> list[gm_notes.Note]:
    notes = [
        gm_notes.Note("train", "piano", 0, 0, 60, 80),
        gm_notes.Note("train", "brass", 6, 56, 62, 112),
        gm_notes.Note("test", "brass", 6, 57, 64, 48),
    ]
    for split in gm_notes.SPLITS:
        (root / split).mkdir(parents=True)
    for note in notes:
        sf.write(root / note.file, np.full(16000, 0.1, "float32"), 16000, subtype="PCM_16")
    gm_notes.write_labels(notes, root)
    return notes


def test_load_split_and_probe_data_from_the_train_folder_or_the_root(tmp_path):
    _fake_corpus(tmp_path)
    waveforms, labels = gm_notes.load_split(tmp_path, "train")
    assert [w.dtype for w in waveforms] == ["float32"] * 2 and labels.tolist() == [0, 6]
    for source in (tmp_path / "train", tmp_path):
        data = gm_notes.probe_data(ConfigDict({"data": {"source": str(source)}}))
        assert (data.train_labels.tolist(), data.test_labels.tolist()) == ([0, 6], [6])
        assert len(data.test_waveforms[0]) == 16000
    with pytest.raises(InputError, match="labels.csv"):
        gm_notes.probe_data(ConfigDict({"data": {"source": str(tmp_path / "train" / "x")}}))


@has_fluidsynth
def test_renders_three_notes(tmp_path):
    notes = [
        gm_notes.Note("train", "piano", 0, 0, 60, 100),
        gm_notes.Note("train", "bass", 4, 33, 40, 80),
        gm_notes.Note("test", "pipe", 8, 73, 79, 112),
    ]
    root = gm_notes.render_corpus(tmp_path / "corpus", notes, progress=None)
    assert root == tmp_path / "corpus" and not (tmp_path / "corpus.partial").exists()
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["file"] for row in rows] == [note.file for note in notes]
    assert rows[1] == {
        "file": "train/bass_p033_n040_v080.wav", "split": "train", "family": "bass",
        "family_index": "4", "program": "33", "pitch": "40", "velocity": "80",
    }  # fmt: skip
    for note in notes:
        info = sf.info(root / note.file)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == 4 * 16000
        audio, _ = sf.read(root / note.file, dtype="float32")
        assert np.abs(audio).max() > 0.01  # sounding
        # held for 2.75 s then released: the last half second is quieter than the first
        assert np.sqrt(np.mean(audio[-8000:] ** 2)) < np.sqrt(np.mean(audio[:8000] ** 2))
    with pytest.raises(SystemExit, match="already exists"):
        gm_notes.render_corpus(root, notes, progress=None)
