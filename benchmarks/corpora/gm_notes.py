r"""Single notes of General MIDI instruments rendered with FluidSynth: a small labelled corpus.

    apt-get install -y fluidsynth fluid-soundfont-gm
    nice -n 10 python -m benchmarks.corpora.gm_notes --output /work/data/gm_notes

Each clip is one note of one GM program, written as a one-track Standard MIDI File by
`midi_file` (no MIDI library), rendered by the `fluidsynth` CLI with the FluidR3 GM SoundFont
(`--soundfont`; reverb and chorus off, gain `GAIN`), mixed to mono (the mean of the two
channels), cut or zero-padded to exactly `CLIP_SECONDS` s and written as 16 kHz 16-bit PCM WAV.
The note is held `HOLD_SECONDS` s from the start, then released, so the clip ends with the
instrument's release tail. A render whose peak is below `SILENCE_PEAK` (or reaches full scale)
is an error naming the file: nothing is skipped or replaced silently.

The labels are the 10 GM instrument families of `FAMILIES` (8 programs each): piano, chromatic
percussion, organ, guitar, bass, strings, brass, reed, pipe, synth lead. Each family gets a
pitch range suited to it (`FAMILIES[...].low/high`): 25 pitches spread evenly across it, of
which 5 (`TEST_PITCH_INDICES`: every 5th, from the 3rd) are held out for the test split. Each
family has 100 notes, `TRAIN_PER_FAMILY` (80) in `train` and `TEST_PER_FAMILY` (20) in `test`;
1,000 clips in all. Train: each program plays 10 of the family's 20 train pitches (drawn without
replacement); test: the 20 notes go to the 8 programs 3,3,3,3,2,2,2,2 (which ones get 3 is
drawn), each on distinct held-out pitches. Three presets are silent above some key
(`PROGRAM_CEILINGS`: contrabass, tuba, baritone sax); their notes are drawn below it. Each
note's velocity is drawn from `VELOCITIES`. Every draw comes from
`numpy.random.default_rng(seed)` (`--seed`, default 0): the plan, and so the corpus, is
deterministic.

Why held-out pitches rather than a random stratified split: within a program, notes a semitone
apart (and the same note at another velocity) are mostly the same SoundFont sample, resampled;
a random split would put such near-copies on both sides and let a probe match them rather than
recognise the family. With held-out pitches every test note's pitch is one its family never
plays in train, so the probe must carry the timbre across pitch. (The 8 programs themselves are
in both splits: the task is "which family is this instrument", not "an unseen instrument".)
The test split is balanced: 20 clips per family.

Layout of `--output` (the corpus root):
    train/<family>_p<program>_n<pitch>_v<velocity>.wav   800 clips (train/brass_p056_n060_v112.wav)
    test/...                                             200 clips
    labels.csv  file,split,family,family_index,program,pitch,velocity  (file relative to the root)

Rendering goes into `<output>.partial/` and that folder is renamed to `<output>` once every clip
and labels.csv are written; a rerun after an interruption resumes it (each WAV is written to a
temporary name and renamed, so a file present there is complete; a file there that the plan
does not make is refused). An existing `<output>` is refused: delete it to render again.

For matpac-keras: pretrain on the `train/` folder (a folder source is searched recursively and
`data.exclude` matches file names only, so the root would mix the test notes in), and probe the
families with `probe_data` (from the repo root; `PYTHONPATH=.` because benchmarks/ is not part
of the installed package and a console script does not put the working folder on sys.path):

    PYTHONPATH=. matpac-train --config=configs/demo.py:fsdd --workdir=runs/gm_notes \
        --config.data.source=/work/data/gm_notes/train --config.data.exclude= \
        --config.evaluate.probe_source=benchmarks.corpora.gm_notes:probe_data

`probe_data` reads `config.data.source` as the corpus's `train/` (or any split) subfolder, or
as the corpus root itself (the folder holding labels.csv): fitted on `train`, scored on `test`.
`load_split(root, split)` gives one split's (waveforms, labels) to any script.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
CLIP_SECONDS = 4.0
HOLD_SECONDS = 2.75  # note on at 0, note off here; the release tail fills the rest of the clip
GAIN = 1.0  # fluidsynth -g: peaks of loud notes at velocity 127 stay near 0.6
SILENCE_PEAK = 1e-3  # a mono clip whose peak is below this (-60 dBFS) is an error
VELOCITIES = (48, 80, 112)
PITCHES_PER_FAMILY = 25
TEST_PITCH_INDICES = (2, 7, 12, 17, 22)  # of the 25: held out for the test split
TRAIN_PER_FAMILY = 80
TEST_PER_FAMILY = 20
DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
APT_PACKAGES = "fluidsynth fluid-soundfont-gm"
SPLITS = ("train", "test")
LABELS = "labels.csv"
COLUMNS = ("file", "split", "family", "family_index", "program", "pitch", "velocity")


@dataclasses.dataclass(frozen=True)
class Family:
    """A GM instrument family: programs first_program..first_program+7 (0-based), and the MIDI
    pitch range its notes are drawn from."""

    name: str
    first_program: int
    low: int
    high: int

    @property
    def programs(self) -> tuple[int, ...]:
        return tuple(range(self.first_program, self.first_program + 8))

    def pitches(self) -> list[int]:
        """`PITCHES_PER_FAMILY` distinct pitches spread evenly over low..high."""
        span = self.high - self.low
        return [
            self.low + round(i * span / (PITCHES_PER_FAMILY - 1)) for i in range(PITCHES_PER_FAMILY)
        ]


# The GM program table's families (programs 0-based, as in the program-change byte).
FAMILIES = (
    Family("piano", 0, 36, 84),
    Family("chromatic_percussion", 8, 60, 96),  # celesta .. dulcimer
    Family("organ", 16, 36, 84),
    Family("guitar", 24, 40, 76),
    Family("bass", 32, 28, 55),
    Family("strings", 40, 36, 72),  # violin .. timpani; low enough for the contrabass
    Family("brass", 56, 46, 76),
    Family("reed", 64, 50, 80),  # saxophones, oboe, english horn, bassoon, clarinet
    Family("pipe", 72, 60, 90),  # piccolo .. ocarina
    Family("synth_lead", 80, 48, 84),
)

# The highest key these FluidR3 GM presets sound (above it they render silence: found by rendering
# every pitch of each family with each of its programs); their notes are drawn at or below it.
PROGRAM_CEILINGS = {43: 57, 58: 73, 67: 73}  # contrabass, tuba, baritone sax


@dataclasses.dataclass(frozen=True)
class Note:
    """One clip of the corpus."""

    split: str
    family: str
    family_index: int
    program: int
    pitch: int
    velocity: int

    @property
    def file(self) -> str:
        """Its path relative to the corpus root."""
        return (
            f"{self.split}/{self.family}_p{self.program:03d}_n{self.pitch:03d}"
            f"_v{self.velocity:03d}.wav"
        )


def plan(seed: int = 0, families=FAMILIES) -> list[Note]:
    """Every note of the corpus (see the module docstring), train then test, deterministic."""
    rng = np.random.default_rng(seed)
    notes = {split: [] for split in SPLITS}
    per_program_train = TRAIN_PER_FAMILY // 8
    for index, family in enumerate(families):
        pitches = family.pitches()
        test_pitches = [pitches[i] for i in TEST_PITCH_INDICES]
        train_pitches = [p for i, p in enumerate(pitches) if i not in TEST_PITCH_INDICES]
        test_counts = [3] * 4 + [2] * 4
        rng.shuffle(test_counts)
        for program, test_count in zip(family.programs, test_counts, strict=True):
            ceiling = PROGRAM_CEILINGS.get(program, 127)
            for split, pitch_pool, count in (
                ("train", train_pitches, per_program_train),
                ("test", test_pitches, test_count),
            ):
                pool = [pitch for pitch in pitch_pool if pitch <= ceiling]
                if len(pool) < count:
                    raise ValueError(
                        f"{family.name} program {program}: {len(pool)} {split} pitches at or "
                        f"below {ceiling}, {count} needed"
                    )
                for pitch in sorted(rng.choice(pool, size=count, replace=False).tolist()):
                    velocity = int(rng.choice(VELOCITIES))
                    notes[split].append(Note(split, family.name, index, program, pitch, velocity))
    return notes["train"] + notes["test"]


def _variable_length(value: int) -> bytes:
    """A MIDI variable-length quantity: 7 bits a byte, most significant first, high bit set on
    all but the last byte."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_file(
    program: int,
    pitch: int,
    velocity: int,
    hold_seconds: float = HOLD_SECONDS,
    total_seconds: float = CLIP_SECONDS,
    ticks_per_quarter: int = 480,
    tempo_us: int = 500_000,
) -> bytes:
    """A format-0 Standard MIDI File of one note on channel 0: tempo, program change, note on
    at tick 0, note off after `hold_seconds`, end of track at `total_seconds` (so the player
    keeps running through the release tail)."""
    for name, value in (("program", program), ("pitch", pitch), ("velocity", velocity)):
        if not 0 <= value <= 127:
            raise ValueError(f"{name} {value} is not a 7-bit MIDI value")
    ticks_per_second = ticks_per_quarter * 1_000_000 / tempo_us
    off = round(hold_seconds * ticks_per_second)
    end = max(off, round(total_seconds * ticks_per_second))
    events = b"".join(
        (
            _variable_length(0) + b"\xff\x51\x03" + tempo_us.to_bytes(3, "big"),
            _variable_length(0) + bytes((0xC0, program)),
            _variable_length(0) + bytes((0x90, pitch, velocity)),
            _variable_length(off) + bytes((0x80, pitch, 0)),
            _variable_length(end - off) + b"\xff\x2f\x00",
        )
    )
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks_per_quarter)
    return header + b"MTrk" + struct.pack(">I", len(events)) + events


def check_tools(soundfont: str | os.PathLike) -> str:
    """The fluidsynth executable; SystemExit with a one-line message naming the apt packages
    when it or the SoundFont is missing."""
    executable = shutil.which("fluidsynth")
    if executable is None:
        raise SystemExit(f"gm_notes: fluidsynth not found; apt-get install -y {APT_PACKAGES}")
    if not pathlib.Path(soundfont).is_file():
        raise SystemExit(
            f"gm_notes: SoundFont {soundfont} not found; apt-get install -y {APT_PACKAGES} "
            "(or pass --soundfont)"
        )
    return executable


class RenderError(RuntimeError):
    """A note that fluidsynth failed to render, or rendered silent or clipped."""


def render_note(note: Note, path: pathlib.Path, soundfont, executable: str = "fluidsynth"):
    """Renders `note` to `path` (16 kHz mono PCM_16 WAV, `CLIP_SECONDS` long); returns the
    mono clip's peak. RenderError naming the file when the render fails, is silent or clips."""
    with tempfile.TemporaryDirectory(prefix="gm_notes_") as scratch:
        midi = pathlib.Path(scratch) / "note.mid"
        raw = pathlib.Path(scratch) / "note.wav"
        midi.write_bytes(midi_file(note.program, note.pitch, note.velocity))
        command = [
            executable, "-ni", "-q", "-g", str(GAIN), "-r", str(SAMPLE_RATE),
            "-R", "0", "-C", "0", "-O", "float", "-T", "wav", "-F", str(raw),
            str(soundfont), str(midi),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not raw.is_file():
            raise RenderError(
                f"{note.file}: fluidsynth exited {done.returncode}: {done.stderr.strip()[-300:]}"
            )
        audio, rate = sf.read(raw, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise RenderError(f"{note.file}: fluidsynth wrote {rate} Hz, not {SAMPLE_RATE}")
    mono = audio.mean(axis=1)
    samples = int(CLIP_SECONDS * SAMPLE_RATE)
    mono = np.pad(mono[:samples], (0, max(0, samples - len(mono))))
    peak = float(np.abs(mono).max())
    if peak < SILENCE_PEAK:
        raise RenderError(f"{note.file}: silent render (peak {peak:.2g} < {SILENCE_PEAK})")
    if peak >= 1.0:
        raise RenderError(f"{note.file}: clipped render (peak {peak:.3f}); lower GAIN")
    temporary = path.with_name(path.name + ".tmp")
    sf.write(temporary, mono, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(temporary, path)
    return peak


def write_labels(notes: list[Note], root: pathlib.Path) -> None:
    """labels.csv: one row per note, `COLUMNS`."""
    with open(root / LABELS, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for note in notes:
            writer.writerow(
                (note.file, note.split, note.family, note.family_index, note.program, note.pitch,
                 note.velocity)
            )  # fmt: skip


def render_corpus(
    output, notes: list[Note], soundfont=DEFAULT_SOUNDFONT, jobs: int = 2, progress=sys.stderr
) -> pathlib.Path:
    """Renders `notes` into `<output>.partial/` (resuming it), writes labels.csv, renames it to
    `output`; returns the corpus root. SystemExit when `output` already exists or a tool is
    missing; RenderError (the first one) when a note fails."""
    output = pathlib.Path(output)
    executable = check_tools(soundfont)
    if output.exists():
        raise SystemExit(f"gm_notes: {output} already exists; delete it to render again")
    partial = output.with_name(output.name + ".partial")
    for split in SPLITS:
        (partial / split).mkdir(parents=True, exist_ok=True)
    for leftover in partial.glob("*/*.wav.tmp"):  # a write cut short: redone below
        leftover.unlink()
    planned = {note.file for note in notes}
    stray = sorted(
        path.relative_to(partial).as_posix()
        for path in partial.rglob("*")
        if path.is_file() and path.relative_to(partial).as_posix() not in planned
    )
    if stray:
        raise SystemExit(
            f"gm_notes: {partial} holds {len(stray)} files this plan does not make ({stray[0]}, "
            "another seed or version?); delete it to render again"
        )
    todo = [note for note in notes if not (partial / note.file).is_file()]
    if progress and len(todo) < len(notes):
        print(f"resuming {partial}: {len(notes) - len(todo)} clips already there", file=progress)
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = {
            pool.submit(render_note, note, partial / note.file, soundfont, executable): note
            for note in todo
        }
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            try:
                future.result()
            except RenderError:
                for other in futures:
                    other.cancel()
                raise
            if progress:
                elapsed = time.monotonic() - start
                print(
                    f"\rrendered {done}/{len(todo)} ({futures[future].file}) {elapsed:.0f} s",
                    end="", file=progress, flush=True,
                )  # fmt: skip
    if progress and todo:
        print(file=progress)
    write_labels(notes, partial)
    partial.rename(output)
    return output


def read_labels(root) -> list[dict]:
    """The rows of `root`/labels.csv (ints as ints)."""
    path = pathlib.Path(root) / LABELS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a gm_notes corpus (no {LABELS})")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("family_index", "program", "pitch", "velocity"):
            row[key] = int(row[key])
    return rows


def load_split(root, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    """(waveforms, labels) of one split of the corpus at `root`: float32 16 kHz mono arrays
    (`CLIP_SECONDS` long) in labels.csv order, and int family indices."""
    root = pathlib.Path(root)
    rows = [row for row in read_labels(root) if row["split"] == split]
    if not rows:
        raise ValueError(f"{root}: no clips in split {split!r}")
    waveforms = []
    for row in rows:
        audio, rate = sf.read(root / row["file"], dtype="float32")
        if rate != SAMPLE_RATE or audio.ndim != 1:
            raise ValueError(f"{root / row['file']}: not 16 kHz mono")
        waveforms.append(audio)
    return waveforms, np.array([row["family_index"] for row in rows], dtype=np.int64)


def corpus_root(source) -> pathlib.Path:
    """The corpus root of `source`: the folder itself when it holds labels.csv, else its parent
    when that does (`source` is a split folder such as train/)."""
    source = pathlib.Path(source)
    for candidate in (source, source.parent):
        if (candidate / LABELS).is_file():
            return candidate
    raise FileNotFoundError(
        f"{source}: neither it nor its parent holds {LABELS}; render the corpus with "
        "python -m benchmarks.corpora.gm_notes --output DIR"
    )


def probe_data(config):
    """The family probe (`matpac_keras.training.probe.ProbeClips`) of the corpus of
    `config.data.source` (its train/ folder or its root): fitted on the 800 train notes,
    scored on the 200 test notes (held-out pitches), each 4 s."""
    from matpac_keras.errors import InputError
    from matpac_keras.training.probe import ProbeClips

    try:
        root = corpus_root(config.data.source)
    except FileNotFoundError as error:
        raise InputError(str(error)) from error
    train_x, train_y = load_split(root, "train")
    test_x, test_y = load_split(root, "test")
    description = f"GM note families ({len(FAMILIES)}), held-out pitches"
    return ProbeClips(description, train_x, train_y, test_x, test_y)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="corpus root to create")
    parser.add_argument("--soundfont", default=DEFAULT_SOUNDFONT, help="GM .sf2 file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the note plan")
    parser.add_argument("--jobs", type=int, default=2, help="fluidsynth processes at once")
    args = parser.parse_args(argv)
    notes = plan(args.seed)
    start = time.monotonic()
    try:
        root = render_corpus(args.output, notes, args.soundfont, args.jobs)
    except RenderError as error:
        raise SystemExit(f"gm_notes: {error}") from error
    counts = {split: sum(note.split == split for note in notes) for split in SPLITS}
    print(
        f"{root}: {len(notes)} clips ({counts['train']} train, {counts['test']} test), "
        f"{len(FAMILIES)} families, {time.monotonic() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
