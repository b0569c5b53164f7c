"""Dependencies point down the layers: no module of matpac_keras imports a higher layer.

The layers, lowest first. A module may import its own layer and those below; a package's
modules share its layer. The few back edges that remain are listed with the work that removes
them: the test fails on any other, and on a listed one that no longer exists (so the list only
shrinks).
"""

import ast
import pathlib

import pytest

pytestmark = pytest.mark.single_backend

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "matpac_keras"
LAYERS = (
    # foundations: errors, files, checkpoints reader, audio decoding, optimisers and schedules
    (
        "errors",
        "config_file",
        "config_ranges",
        "outputs",
        "embedding_shards",
        "workdir_lock",
        "model_path",
        "presets",
        "head_labels",
        "class_mappings",
        "torch_checkpoint",
        "audio",
        "schedules",
        "optimizers",
        "masking",
        "distribute",
        "allocator",
    ),
    ("logmel", "frontend", "layers"),  # the log-mel and the transformer building blocks
    # networks, their FLOP count, train steps
    ("heads", "losses", "predictor", "backbone", "flops", "train_steps"),
    # models, and the embeddings of audio files
    (
        "audio_converter",
        "pretrainer",
        "numpy_embedding",
        "numpy_classifier",
        "embedding",
        "file_embeddings",
        "audio_classifier",
        "convert",
    ),
    # reading, writing, serving and applying models; other runtimes of the encoder
    ("saving", "export", "encoder_runtime", "hear", "tagging"),
    ("data",),  # tf.data pipelines and sources
    ("evaluation",),  # probes, downstream tasks, fine-tuning
    ("training",),  # matpac-train's loop, and the AudioSet fine-tuning recipe built on it
    ("demo",),  # demo corpora and probe sources, given to training
    ("cli", "beam"),  # the command-line programs, and the Beam pipeline (one is `python -m`)
)
# (importer, imported): what removes it.
KNOWN_BACK_EDGES: dict[tuple[str, str], str] = {}


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    for level, names in enumerate(LAYERS):
        if module in names or top in names:
            return level
    raise AssertionError(f"{PACKAGE}.{module}: in no layer of tests/package_layering_test.py")


def imports(path: pathlib.Path) -> set[str]:
    """The matpac_keras modules a file imports (relative to the package), anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if not name.startswith(f"{PACKAGE}."):
                continue
            module = name[len(PACKAGE) + 1 :]
            relative = pathlib.Path(*module.split("."))
            if (ROOT / PACKAGE / relative).with_suffix(".py").is_file() or (
                ROOT / PACKAGE / relative
            ).is_dir():
                found.add(module)
    return found


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT / PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            found[".".join(parts)] = path
    return found


def back_edges() -> set[tuple[str, str]]:
    edges = set()
    for module, path in modules().items():
        for imported in imports(path):
            if layer_of(imported) > layer_of(module):
                edges.add((module, imported))
    return edges


def test_every_module_has_a_layer():
    for module in modules():
        layer_of(module)


def test_no_import_runs_back_up_the_layers():
    unexpected = sorted(back_edges() - set(KNOWN_BACK_EDGES))
    assert not unexpected, "imports that run back up the layers:\n" + "\n".join(
        f"  {PACKAGE}.{a} (layer {layer_of(a)}) imports {PACKAGE}.{b} (layer {layer_of(b)})"
        for a, b in unexpected
    )


def test_known_back_edges_still_exist():
    gone = sorted(set(KNOWN_BACK_EDGES) - back_edges())
    assert not gone, f"remove these from KNOWN_BACK_EDGES, they are fixed: {gone}"


def test_the_check_sees_a_back_edge(tmp_path, monkeypatch):
    """A low module importing a high one is reported (the check can fail)."""
    fake = tmp_path / PACKAGE
    (fake / "cli").mkdir(parents=True)
    (fake / "cli" / "embed.py").write_text("")
    (fake / "errors.py").write_text("from matpac_keras.cli import embed\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert back_edges() == {("errors", "cli"), ("errors", "cli.embed")}
