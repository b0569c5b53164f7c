"""Every ```python and ```bash block of README.md and docs/*.md runs, as a reader would run it.

Each page's blocks run in order in a folder of their own, holding tiny stand-ins under the names
the docs use (`STAND_INS`), with the checkout's `configs/` beside them and `matpac-*` commands
that run the checkout's code. Consecutive python blocks share one interpreter (and names); they
start from `PRELUDE`'s inputs. A block that cannot run here is preceded by
`<!-- not-run: REASON -->` (a cluster, a published checkpoint, a long job: name the test that
covers it); the reason is required. Other fences (```json, plain ```) are not code.
"""

import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.single_backend  # the CLIs, exports and TFDS need TensorFlow anyway

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = ["README.md"] + sorted(
    str(path.relative_to(ROOT)) for path in (ROOT / "docs").rglob("*.md")
)
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*not-run\b(?P<rest>.*?)-->\s*$")
RUN_LANGS = ("python", "bash")
COMMANDS = ("convert", "embed", "train", "export", "evaluate", "finetune", "tag")

# The inputs the python blocks take as given (a reader has their own).
PRELUDE = """
import numpy as np
_rng = np.random.default_rng(0)
waveforms = _rng.normal(scale=0.1, size=(2, 16000)).astype("float32")  # [batch, samples], 16 kHz
labels = np.array([1, 0])
list_of_clips = [waveforms[0], waveforms[1, :12000]]
audio = waveforms
"""


@dataclasses.dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    not_run: str | None  # the reason, when marked


def blocks_of(text: str, page: str) -> list[Block]:
    """The fenced blocks of a markdown text; raises on a marker without a reason or without a
    code block after it, and on an unclosed fence."""
    lines = text.splitlines()
    found, i, pending = [], 0, None
    while i < len(lines):
        marker = MARKER.match(lines[i])
        fence = FENCE.match(lines[i])
        if marker:
            reason = marker["rest"].strip().removeprefix(":").strip()
            if not marker["rest"].strip().startswith(":") or not reason:
                raise ValueError(f"{page}:{i + 1}: write <!-- not-run: REASON --> with a reason")
            pending = (i + 1, reason)
        elif fence and fence["lang"]:
            start, indent, body = i, len(fence["indent"]), []
            i += 1
            while i < len(lines) and not re.match(rf"^ {{{indent}}}```\s*$", lines[i]):
                body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
                i += 1
            if i == len(lines):
                raise ValueError(f"{page}:{start + 1}: unclosed ``` block")
            reason = None
            if pending:
                reason = pending[1]
                pending = None
            found.append(Block(page, start + 1, fence["lang"], "\n".join(body) + "\n", reason))
        elif fence:  # a plain fence: skip to its end
            i += 1
            while i < len(lines) and not FENCE.match(lines[i]):
                i += 1
        elif pending and lines[i].strip():
            raise ValueError(f"{page}:{pending[0]}: a not-run marker must precede a ``` block")
        i += 1
    if pending:
        raise ValueError(f"{page}:{pending[0]}: a not-run marker must precede a ``` block")
    return found


def _tone(seconds: float, freq: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(int(freq)).normal(scale=0.05, size=t.size)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype("float32")


def make_stand_ins(folder: pathlib.Path) -> None:
    """The names the docs use, as tiny models (D=32, one block; the published models' 6.08 s
    chunks) and short clips."""
    import keras

    from matpac_keras.audio_classifier import MatpacAudioClassifier
    from matpac_keras.backbone import MatpacBackbone
    from matpac_keras.saving import save_preset

    keras.utils.set_random_seed(0)
    backbone = MatpacBackbone(embed_dim=32, depth=1, num_heads=2, max_frames=608)
    backbone.save(folder / "matpac.keras")
    save_preset(backbone, folder / "matpac_plus")
    tagger = MatpacAudioClassifier.from_preset(
        str(folder / "matpac_plus"),
        num_classes=4,
        labels=["Speech", "Music", "Dog", "Rain"],
        multi_label=True,
    )
    tagger.save_to_preset(folder / "as_tagger")
    esc50 = MatpacAudioClassifier.from_preset(
        str(folder / "matpac_plus"), num_classes=5, labels=["dog", "rain", "sea", "cat", "bird"]
    )
    esc50.save_to_preset(folder / "esc50_tagger")
    (folder / "clips").mkdir()
    for k in range(4):
        sf.write(folder / "clips" / f"clip{k}.wav", _tone(1.0 + 0.3 * k, 220 * (k + 1)), 16000)
    sf.write(folder / "a.wav", _tone(1.2, 330), 16000)
    sf.write(folder / "b.flac", _tone(0.8, 440), 16000)
    np.save(folder / "clips.npy", np.stack([_tone(1.0, 220), _tone(1.0, 660)]))
    (folder / "more.txt").write_text("a.wav\nb.flac\n")
    (folder / "audioset.txt").write_text("a.wav\nb.flac\nclips/clip0.wav\n")


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stand_ins")
    make_stand_ins(folder)
    bin_dir = tmp_path_factory.mktemp("bin")
    for command in COMMANDS:  # the checkout's code, whatever is installed
        script = bin_dir / f"matpac-{command}"
        script.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" -m matpac_keras.cli.{command} "$@"\n'
        )
        script.chmod(0o755)
    return folder, bin_dir


def run_page(page: str, folder: pathlib.Path, bin_dir: pathlib.Path) -> None:
    """Runs the page's runnable blocks in order in `folder`; fails naming the first that fails."""
    blocks = [
        b for b in blocks_of((ROOT / page).read_text(encoding="utf-8"), page) if b.not_run is None
    ]
    blocks = [b for b in blocks if b.lang in RUN_LANGS]
    folder.mkdir(exist_ok=True)
    os.symlink(ROOT / "configs", folder / "configs")
    # The checkout's matpac-* first, then the environment's tools (saved_model_cli).
    path = [str(bin_dir), os.path.dirname(sys.executable), os.environ["PATH"]]
    env = {
        **os.environ,
        "PATH": os.pathsep.join(path),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    i = 0
    while i < len(blocks):
        if blocks[i].lang == "bash":
            group, command = [blocks[i]], ["bash", "-euo", "pipefail", "-c", blocks[i].code]
            i += 1
        else:
            group = []
            while i < len(blocks) and blocks[i].lang == "python":
                group.append(blocks[i])
                i += 1
            command = [sys.executable, "-c", _python_driver(group)]
        result = subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=600
        )
        where = ", ".join(f"{b.page}:{b.line}" for b in group)
        assert result.returncode == 0, (
            f"the block at {where} failed:\n{group[-1].code}\n{result.stderr[-3000:]}"
        )


def _python_driver(group: list[Block]) -> str:
    """One script running the blocks in turn in one namespace, each under its page and line."""
    sources = json.dumps([[f"{b.page}:{b.line}", b.code] for b in group])
    return PRELUDE + textwrap.dedent(f"""
        import json as _json
        for _where, _code in _json.loads({sources!r}):
            exec(compile(_code, _where, "exec"))
        """)


@pytest.mark.parametrize("page", PAGES)
def test_page_blocks_run(page, stand_ins, tmp_path):
    template, bin_dir = stand_ins
    folder = tmp_path / "work"
    shutil.copytree(template, folder)
    run_page(page, folder, bin_dir)


def test_every_page_is_in_the_site():
    """mkdocs.yml's nav names every page of docs/ (and only those)."""
    nav = set(re.findall(r"\b([\w/-]+\.md)\b", (ROOT / "mkdocs.yml").read_text()))
    assert nav == {p.removeprefix("docs/") for p in PAGES if p.startswith("docs/")}


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


# The runner itself: it can fail.


def test_parser_reads_markers_indented_blocks_and_plain_fences():
    text = textwrap.dedent("""\
        ```bash
        echo one
        ```
        <!-- not-run: needs a GPU cluster -->
        ```python
        x = 1
        ```
        ```
        plain, not code
        ```
        - a list item:

          ```bash
          echo indented
          ```
        """)
    blocks = blocks_of(text, "page.md")
    assert [(b.line, b.lang, b.code, b.not_run) for b in blocks] == [
        (1, "bash", "echo one\n", None),
        (5, "python", "x = 1\n", "needs a GPU cluster"),
        (13, "bash", "echo indented\n", None),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "<!-- not-run -->\n```bash\necho\n```\n",
        "<!-- not-run:   -->\n```bash\necho\n```\n",
        "<!-- not-run: a reason -->\nsome text\n```bash\necho\n```\n",
        "```bash\necho\n",
    ],
    ids=["no reason", "empty reason", "marker away from its block", "unclosed"],
)
def test_parser_refuses_bad_markers(text):
    with pytest.raises(ValueError, match="page.md:1"):
        blocks_of(text, "page.md")


def test_a_failing_block_fails_naming_it(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\ntrue\n```\n\n```bash\nfalse\n```\n")
    with pytest.raises(AssertionError, match=r"page.md:5 failed"):
        run_page(str(page), tmp_path / "work", tmp_path)


def test_python_blocks_share_names_and_fail_naming_their_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = len(waveforms)\n```\n```python\nassert x == 3\n```\n")
    with pytest.raises(AssertionError, match=r"page.md:4"):
        run_page(str(page), tmp_path / "work", tmp_path)
