"""Regenerates the top-level Bazel BUILD file from the Python files on disk.

One `py_library` per module under matpac_keras/ and matpac_datasets/, per helper under tests/
(conftest.py, shared references) and per module of benchmarks/corpora/ (small corpora tests
read), with deps read from its imports (a builder's library carries
the non-Python files of its folder, e.g. split lists, as data); one `py_test` per
tests/**/*_test.py and matpac_datasets/**/*_test.py (with the builder's dummy_data/), run
through tests/pytest_runner.py, depending on every library it imports and on the conftest.py
files pytest loads for it. Re-run after adding, moving or changing the imports of modules:

    python tools/update_build.py            # rewrites BUILD
    python tools/update_build.py --check    # exit 1, with a diff, when BUILD is out of date
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import pathlib
import sys

LIBRARY_ROOT = "matpac_keras"
DATASETS_ROOT = "matpac_datasets"
TEST_ROOT = "tests"
BENCHMARKS_ROOT = "benchmarks"
ROOTS = (LIBRARY_ROOT, DATASETS_ROOT, TEST_ROOT, BENCHMARKS_ROOT)
# Of benchmarks/, only the modules tests import get libraries (the benchmark scripts are run by
# hand and need packages the tests do not install): its __init__.py and the corpora/ package.
BENCHMARK_LIBRARIES = (f"{BENCHMARKS_ROOT}/__init__.py", f"{BENCHMARKS_ROOT}/corpora/")
TEST_FOLDERS = (TEST_ROOT, DATASETS_ROOT)
DUMMY_DATA = "dummy_data"
RUNNER = "tests/pytest_runner.py"
# pyproject.toml holds the pytest configuration (markers, warning filters) tools/test.sh uses.
TEST_DATA = ("pyproject.toml",)
# Test files over ~10 s (pytest, TensorFlow backend, 2 shared CPU cores): tagged "slow" and
# "manual", so Bazel runs them only when named. A test file whose module-level `pytestmark`
# includes `pytest.mark.slow` is slow as well.
SLOW_TESTS = {
    "tests/cli/convert_embed_test.py": "45 s",
    "tests/embedding_test.py": "11 s",
    "tests/distribute_tf_test.py": "90 s",
    "tests/pretrainer_train_step_test.py": "50 s",
    "tests/pretrainer_mixed_precision_test.py": "60 s",
    "tests/cli/train_test.py": "65 s",
    "tests/saving_test.py": "45 s",
    "tests/evaluation/evaluate_cli_test.py": "90 s",
    "tests/evaluation/finetune_cli_test.py": "30 s",
    "tests/audio_classifier_test.py": "40 s",
    "tests/evaluation/features_test.py": "20 s",
    # CLI subprocess tests (pytest runs them; Bazel when named):
    "tests/cli/errors_test.py": "130 s",
    "tests/cli/train_real_audio_test.py": "300 s",
    "tests/training/loop_test.py": "180 s",
    "tests/cli/embed_output_test.py": "35 s",
    "tests/cli/embed_memory_test.py": "45 s",
    "tests/training/checkpoint_test.py": "45 s",
    "tests/presets_test.py": "25 s",
    "tests/export_formats_test.py": "65 s",
    "tests/tfds_build_cli_test.py": "35 s",
    "tests/cli/tag_test.py": "90 s",
    "tests/tagging_test.py": "20 s",
    "tests/evaluation/finetune_audioset_test.py": "50 s",
    "tests/training/init_from_test.py": "150 s",
    "tests/package_import_test.py": "60 s",
    "tests/docs_test.py": "180 s",
}
# The builder tests (~20 s each under Bazel) all run under pytest; Bazel's fast set keeps the
# shared library's, the others run when named. (Their dummy_data/ files are symlinks out of the
# runfiles tree under Bazel, which the builders skip as links leaving manual_dir.)
FAST_BUILDER_TESTS = ("matpac_datasets/audio_builder_lib_test.py",)
# Deps that imports do not show: modules a test runs in a subprocess (`python -m ...`).
EXTRA_DEPS = {
    "tests/cli/convert_embed_test.py": ("matpac_keras/cli/convert.py", "matpac_keras/cli/embed.py"),
    "tests/cli/train_test.py": ("matpac_keras/cli/train.py",),
    "tests/cli/train_real_audio_test.py": ("matpac_keras/cli/train.py",),
    "tests/training/loop_test.py": ("matpac_keras/cli/train.py",),
    "tests/cli/errors_test.py": (
        "matpac_keras/cli/convert.py",
        "matpac_keras/cli/evaluate.py",
        "matpac_keras/cli/export.py",
        "matpac_keras/cli/finetune.py",
    ),
    "tests/cli/embed_output_test.py": ("matpac_keras/cli/embed.py",),
    "tests/docs_test.py": (
        "matpac_keras/cli/embed.py",
        "matpac_keras/cli/export.py",
        "matpac_keras/cli/tag.py",
        "matpac_keras/cli/train.py",
        "matpac_keras/hear.py",
        "matpac_keras/tagging.py",
    ),
    "tests/cli/embed_memory_test.py": ("matpac_keras/cli/embed.py",),
    # configs/*.py import these (configs are read as files, not through BUILD):
    "tests/configs_test.py": ("matpac_keras/demo/fsdd.py", "matpac_keras/demo/synthetic.py"),
    "tests/evaluation/evaluate_cli_test.py": ("matpac_keras/cli/evaluate.py",),
    "tests/evaluation/finetune_cli_test.py": ("matpac_keras/cli/finetune.py",),
    "tests/evaluation/finetune_audioset_test.py": (
        "matpac_keras/cli/finetune.py",
        "matpac_keras/cli/tag.py",
    ),
    "tests/cli/tag_test.py": ("matpac_keras/cli/convert.py", "matpac_keras/cli/tag.py"),
    "tests/training/init_from_test.py": ("matpac_keras/cli/train.py",),
    "tests/cli/adaptation_readme_test.py": (
        "matpac_keras/cli/convert.py",
        "matpac_keras/cli/evaluate.py",
        "matpac_keras/cli/train.py",
    ),
}
# Files that load builders by name (`matpac_datasets.builder_class`, an importlib call that
# imports do not show) depend on every builder module.
BUILDER_USERS = (
    "matpac_keras/evaluation/tfds_source.py",
    "matpac_datasets/audio_builder_lib_test.py",
    "tests/package_layering_test.py",
)
# build_file_test reads the source tree itself (not its runfiles): never cached, so always run.
EXTRA_DATA = {"tests/build_file_test.py": ("BUILD", "tools/update_build.py")}
EXTRA_TAGS = {"tests/build_file_test.py": ("external",)}
# The "smoke" set tools/test.sh (CI) runs through Bazel after pytest has run every test: the
# BUILD check itself, the layering check, and quick tests whose targets pull in the core libraries
# (backbone, layers and the keras-hub base, the checkpoints reader, the builders' shared library).
# Every other "fast" target runs with plain `tools/bazel_test.sh`.
SMOKE_TESTS = (
    "tests/build_file_test.py",
    "tests/backbone_test.py",
    "tests/torch_checkpoint_test.py",
    "matpac_datasets/audio_builder_lib_test.py",
    "tests/package_layering_test.py",
)

HEADER = """\
# Generated by tools/update_build.py from the files on disk: do not edit by hand.
# Regenerate: python tools/update_build.py     Check: python tools/update_build.py --check
# Run: tools/bazel_test.sh [TARGET...] (default: the py_tests tagged "fast"; CI: "smoke").
"""


@dataclasses.dataclass
class Target:
    """One BUILD rule: kind is "py_library" or "py_test"; paths are relative to the repo root."""

    kind: str
    name: str
    srcs: list[str]
    deps: set[str] = dataclasses.field(default_factory=set)
    main: str | None = None
    args: list[str] = dataclasses.field(default_factory=list)
    data: list[str] = dataclasses.field(default_factory=list)
    size: str | None = None
    tags: list[str] = dataclasses.field(default_factory=list)


def is_test(path: str) -> bool:
    """Whether a repo-relative path is a pytest file that gets its own py_test."""
    return path.startswith(tuple(f"{top}/" for top in TEST_FOLDERS)) and path.endswith("_test.py")


def folder_data(root: pathlib.Path, path: str, dummy: bool) -> list[str]:
    """Non-Python files of a builder's folder (matpac_datasets/<name>/): `dummy` selects its
    dummy_data/ tree (a test's data), else the rest (split lists, citations: the library's).
    A package of the library (matpac_keras/<name>/__init__.py) carries the files beside it
    (e.g. the label lists of class_mappings/)."""
    parts = path.split("/")
    if parts[0] == LIBRARY_ROOT and len(parts) > 2 and parts[-1] == "__init__.py" and not dummy:
        folder = root / "/".join(parts[:-1])
        return sorted(
            f.relative_to(root).as_posix()
            for f in folder.iterdir()
            if f.is_file() and f.suffix not in (".py", ".pyc")
        )
    if parts[0] != DATASETS_ROOT or len(parts) < 3:
        return []
    folder = root / "/".join(parts[:2])
    found = []
    for file in folder.rglob("*"):
        relative = file.relative_to(folder).as_posix()
        if not file.is_file() or file.suffix in (".py", ".pyc") or "__pycache__" in relative:
            continue
        if relative.startswith(f"{DUMMY_DATA}/") == dummy:
            found.append(file.relative_to(root).as_posix())
    return sorted(found)


def library_name(path: str) -> str:
    """Target name of a module: matpac_keras/cli/__init__.py -> matpac_keras_cli_init."""
    stem = path.removesuffix(".py")
    if stem.endswith("/__init__"):
        stem = stem.removesuffix("__init__") + "init"
    return stem.replace("/", "_")


def python_files(root: pathlib.Path) -> list[str]:
    """Every .py file under the roots, repo-relative with "/" separators, sorted."""
    files = []
    for top in ROOTS:
        for path in (root / top).rglob("*.py"):
            relative = path.relative_to(root).as_posix()
            if top != BENCHMARKS_ROOT or relative.startswith(BENCHMARK_LIBRARIES):
                files.append(relative)
    return sorted(files)


def _package_parts(path: str) -> list[str]:
    """Dotted-name parts of the package that contains a file."""
    return path.split("/")[:-1]


def module_file(root: pathlib.Path, dotted: str) -> str | None:
    """The file of one of our modules or packages named `dotted`, or None."""
    parts = dotted.split(".")
    if parts[0] not in ROOTS or not all(part.isidentifier() for part in parts):
        return None
    base = "/".join(parts)
    for candidate in (f"{base}.py", f"{base}/__init__.py"):
        if (root / candidate).is_file():
            return candidate
    return None


def imported_files(root: pathlib.Path, path: str) -> set[str]:
    """Our files that `path` imports (anywhere in the file), or names as a `python -m` module."""
    source = (root / path).read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as error:
        raise SystemExit(f"update_build: cannot parse {path}: {error}") from error
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_parts(path)
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith(tuple(f"{top}." for top in ROOTS)):
                names.add(node.value)
    files = {module_file(root, name) for name in names if name}
    files.discard(None)
    files.discard(path)
    return files


def package_init(root: pathlib.Path, path: str) -> str | None:
    """The __init__.py of the package holding `path` (of the parent package for an __init__)."""
    parts = _package_parts(path)
    if path.endswith("/__init__.py"):
        parts = parts[:-1]
    if not parts:
        return None
    init = "/".join(parts) + "/__init__.py"
    return init if (root / init).is_file() else None


def conftests(root: pathlib.Path, path: str) -> set[str]:
    """The conftest.py files pytest loads for a test file: its folder's and its parents'."""
    parts = _package_parts(path)
    found = set()
    for depth in range(1, len(parts) + 1):
        candidate = "/".join(parts[:depth]) + "/conftest.py"
        if (root / candidate).is_file():
            found.add(candidate)
    return found


def _is_marked_slow(root: pathlib.Path, path: str) -> bool:
    """Whether the module-level `pytestmark` of a test file includes pytest.mark.slow."""
    tree = ast.parse((root / path).read_text(encoding="utf-8"), filename=path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "pytestmark" for target in node.targets
        ):
            for sub in ast.walk(node.value):
                if isinstance(sub, ast.Attribute) and sub.attr == "slow":
                    return True
    return False


def _check_acyclic(targets: list[Target]) -> None:
    """Exit naming the loop if the dependency graph has one (Bazel refuses to analyse it)."""
    graph = {target.name: sorted(dep.lstrip(":") for dep in target.deps) for target in targets}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in graph.get(name, ()):
            if state.get(dep) == 1:
                loop = path[path.index(dep) :] + [dep]
                raise SystemExit("update_build: dependency cycle " + " -> ".join(loop))
            if dep not in state:
                visit(dep)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def collect_targets(root: pathlib.Path) -> list[Target]:
    """The BUILD targets for the files under `root`, libraries first, each group sorted."""
    files = python_files(root)
    libraries = [path for path in files if not is_test(path) and path != RUNNER]
    tests = [path for path in files if is_test(path)]
    if tests and not (root / RUNNER).is_file():
        raise SystemExit(f"update_build: {RUNNER} is missing; the py_tests need it")
    label = {path: ":" + library_name(path) for path in libraries}
    builders = {
        p for p in libraries if p.startswith(f"{DATASETS_ROOT}/") and p.endswith("_builder.py")
    }

    def dynamic(path: str) -> set[str]:
        return builders if path in BUILDER_USERS else set()

    def deps_of(path: str, extra: set[str]) -> set[str]:
        wanted = imported_files(root, path) | extra
        init = package_init(root, path)
        # A package's __init__ that imports one of its own modules (cli/__init__.py imports
        # cli/quiet.py) carries that module: the module's target cannot also need the __init__.
        if init and path not in imported_files(root, init):
            wanted.add(init)
        unknown = sorted(dep for dep in wanted if dep not in label and dep != path)
        if any(not is_test(dep) for dep in unknown):
            raise SystemExit(f"update_build: {path} needs {unknown}, which have no library")
        return {label[dep] for dep in wanted if dep in label}

    targets = [
        Target(
            "py_library",
            library_name(path),
            [path],
            deps_of(path, dynamic(path)),
            data=folder_data(root, path, dummy=False),
        )
        for path in libraries
    ]
    for path in tests:
        slow = path in SLOW_TESTS or _is_marked_slow(root, path)
        slow |= path.startswith(f"{DATASETS_ROOT}/") and path not in FAST_BUILDER_TESTS
        extra = conftests(root, path) | set(EXTRA_DEPS.get(path, ())) | dynamic(path)
        extra_tags = set(EXTRA_TAGS.get(path, ())) | ({"smoke"} if path in SMOKE_TESTS else set())
        targets.append(
            Target(
                "py_test",
                pathlib.PurePosixPath(path).stem,
                [path, RUNNER],
                deps_of(path, extra),
                main=RUNNER,
                args=[path],
                data=sorted(
                    set(TEST_DATA)
                    | set(EXTRA_DATA.get(path, ()))
                    | set(folder_data(root, path, dummy=True))
                ),
                size="large" if slow else None,
                tags=sorted(({"manual", "slow"} if slow else {"fast"}) | extra_tags),
            )
        )
    _check_acyclic(targets)
    seen: dict[str, str] = {}
    for target in targets:
        if target.name in seen:
            raise SystemExit(
                f"update_build: {target.srcs[0]} and {seen[target.name]} both give target "
                f"{target.name!r}; rename one of them"
            )
        seen[target.name] = target.srcs[0]
    return targets


def _string_list(values: list[str]) -> str:
    if len(values) == 1:
        return f'["{values[0]}"]'
    return "[\n" + "".join(f'        "{value}",\n' for value in values) + "    ]"


def render(targets: list[Target]) -> str:
    """The BUILD file text for `targets`, formatted as buildifier would."""
    blocks = [HEADER]
    for target in targets:
        lines = [f"{target.kind}(", f'    name = "{target.name}",']
        if target.size:
            lines.append(f'    size = "{target.size}",')
        lines.append(f"    srcs = {_string_list(target.srcs)},")
        if target.args:
            lines.append(f"    args = {_string_list(target.args)},")
        if target.data:
            lines.append(f"    data = {_string_list(target.data)},")
        if target.kind == "py_test":
            lines.append("    legacy_create_init = False,")
            lines.append(f'    main = "{target.main}",')
        if target.tags:
            lines.append(f"    tags = {_string_list(target.tags)},")
        if target.deps:
            lines.append(f"    deps = {_string_list(sorted(target.deps))},")
        lines.append(")")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def generate(root: pathlib.Path) -> str:
    """The BUILD file text for the repository at `root`."""
    return render(collect_targets(root))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether BUILD is stale")
    parser.add_argument(
        "--root",
        type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parents[1],
        help="repository root (default: this script's parent folder)",
    )
    args = parser.parse_args(argv)
    build = args.root / "BUILD"
    text = generate(args.root)
    current = build.read_text(encoding="utf-8") if build.is_file() else ""
    if args.check:
        if current == text:
            return 0
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                text.splitlines(keepends=True),
                "BUILD",
                "BUILD (tools/update_build.py)",
            )
        )
        print(f"{build} is out of date: run python tools/update_build.py", file=sys.stderr)
        return 1
    if current != text:
        build.write_text(text, encoding="utf-8")
        print(f"wrote {build}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
