"""The Bazel BUILD file covers every module and test, names only real files, and is up to date.

Reads the source tree, not Bazel's runfiles: under Bazel, this file's path is followed through
its runfiles symlink back to the repository (its py_test is tagged "external": never cached).
"""

import ast
import importlib.util
import pathlib
import shutil
import sys

import pytest

pytestmark = pytest.mark.single_backend

ROOT = pathlib.Path(__file__).resolve().parents[1]
RULES = ("py_library", "py_test", "py_binary")


def _load_update_build():
    spec = importlib.util.spec_from_file_location("update_build", ROOT / "tools/update_build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


update_build = _load_update_build()


def parse_build(path: pathlib.Path) -> dict[str, dict]:
    """The rules of a BUILD file: {name: {"kind": rule, attribute: value, ...}}."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    targets = {}
    for node in tree.body:
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
            continue
        call = node.value
        if not (isinstance(call.func, ast.Name) and call.func.id in RULES):
            continue
        attributes = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        name = attributes.get("name")
        assert isinstance(name, str), f"{path}:{node.lineno}: {call.func.id} without a name"
        assert name not in targets, f"{path}:{node.lineno}: target {name!r} defined twice"
        targets[name] = {"kind": call.func.id, **attributes}
    return targets


def build_problems(root: pathlib.Path) -> list[str]:
    """What is wrong with root/BUILD: uncovered modules or tests, missing files, unknown deps."""
    targets = parse_build(root / "BUILD")
    covered = {src for target in targets.values() for src in target.get("srcs", [])}
    wanted = sorted(
        path.relative_to(root).as_posix()
        for path in [*(root / "matpac_keras").rglob("*.py"), *(root / "tests").rglob("*.py")]
    )
    problems = [f"{path} is in no BUILD target's srcs" for path in wanted if path not in covered]
    for name, target in sorted(targets.items()):
        files = [*target.get("srcs", []), *target.get("data", [])]
        files += [target["main"]] if "main" in target else []
        for file in files:
            if not (root / file).is_file():
                problems.append(f"target {name!r} names {file}, which does not exist")
        if "main" in target and target["main"] not in target.get("srcs", []):
            problems.append(f"target {name!r}: main {target['main']} is not in its srcs")
        for dep in target.get("deps", []):
            if dep.startswith(":") and dep[1:] not in targets:
                problems.append(f"target {name!r} depends on {dep}, which is not in BUILD")
    return problems


def test_source_tree_found():
    assert (ROOT / "WORKSPACE").is_file(), f"no WORKSPACE in {ROOT}: source tree not found"
    assert (ROOT / "BUILD").is_file(), f"no BUILD in {ROOT}"


def test_build_covers_every_module_and_test():
    problems = build_problems(ROOT)
    assert not problems, "BUILD problems:\n" + "\n".join(problems)


def test_build_is_update_build_output():
    generated = update_build.generate(ROOT)
    assert (ROOT / "BUILD").read_text(encoding="utf-8") == generated, (
        "BUILD is out of date: run python tools/update_build.py"
    )


def test_every_test_file_has_a_py_test_running_it():
    targets = parse_build(ROOT / "BUILD")
    for path in sorted((ROOT / "tests").rglob("*_test.py")):
        relative = path.relative_to(ROOT).as_posix()
        target = targets.get(path.stem)
        assert target and target["kind"] == "py_test", f"{relative}: no py_test {path.stem!r}"
        assert relative in target["srcs"] and target["args"][:1] == [relative], relative
        assert target["main"] == update_build.RUNNER, relative
        assert {"fast", "slow"} & set(target["tags"]), f"{relative}: tagged neither fast nor slow"


def test_smoke_targets_are_fast_ones_and_include_the_build_check():
    targets = parse_build(ROOT / "BUILD")
    smoke = {name for name, target in targets.items() if "smoke" in target.get("tags", [])}
    expected = {pathlib.PurePosixPath(path).stem for path in update_build.SMOKE_TESTS}
    assert smoke == expected and "build_file_test" in smoke
    for name in smoke:
        assert "fast" in targets[name]["tags"], f"{name}: a smoke target must be fast"


def _write(root: pathlib.Path, path: str, text: str = "") -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text, encoding="utf-8")


@pytest.fixture()
def small_repo(tmp_path) -> pathlib.Path:
    """A repository with a package, a subpackage, test helpers and two tests (one slow)."""
    _write(tmp_path, "WORKSPACE")
    _write(tmp_path, "pyproject.toml")
    _write(tmp_path, "matpac_keras/__init__.py")
    _write(tmp_path, "matpac_keras/a.py", "import numpy\n")
    _write(tmp_path, "matpac_keras/b.py", "import matpac_keras.a\n")
    _write(tmp_path, "matpac_keras/sub/__init__.py")
    _write(tmp_path, "matpac_keras/sub/c.py", "from .. import b\nfrom . import d\n")
    _write(tmp_path, "matpac_keras/sub/d.py", "def f():\n    from matpac_keras.a import X\n")
    _write(tmp_path, "tests/__init__.py")
    _write(tmp_path, "tests/conftest.py")
    _write(tmp_path, "tests/ref.py")
    shutil.copy(ROOT / update_build.RUNNER, tmp_path / update_build.RUNNER)
    _write(tmp_path, "tests/sub/conftest.py")
    _write(
        tmp_path,
        "tests/sub/c_test.py",
        "from matpac_keras.sub import c\nfrom tests import ref\n"
        "CMD = ['python', '-m', 'matpac_keras.sub.d']\n",
    )
    _write(tmp_path, "tests/b_test.py", "import pytest\npytestmark = [pytest.mark.slow]\n")
    return tmp_path


def test_generator_reads_deps_from_imports(small_repo):
    targets = {t.name: t for t in update_build.collect_targets(small_repo)}
    assert set(targets) == {
        "matpac_keras_init",
        "matpac_keras_a",
        "matpac_keras_b",
        "matpac_keras_sub_init",
        "matpac_keras_sub_c",
        "matpac_keras_sub_d",
        "tests_init",
        "tests_conftest",
        "tests_ref",
        "tests_sub_conftest",
        "b_test",
        "c_test",
    }
    assert targets["matpac_keras_init"].deps == set()
    assert targets["matpac_keras_a"].deps == {":matpac_keras_init"}
    assert targets["matpac_keras_b"].deps == {":matpac_keras_init", ":matpac_keras_a"}
    assert targets["matpac_keras_sub_init"].deps == {":matpac_keras_init"}
    assert targets["matpac_keras_sub_c"].deps == {
        ":matpac_keras_init",
        ":matpac_keras_sub_init",
        ":matpac_keras_b",
        ":matpac_keras_sub_d",
    }
    assert targets["matpac_keras_sub_d"].deps == {":matpac_keras_sub_init", ":matpac_keras_a"}
    test = targets["c_test"]
    assert test.kind == "py_test" and test.srcs == ["tests/sub/c_test.py", update_build.RUNNER]
    assert test.deps == {
        ":matpac_keras_sub_c",
        ":matpac_keras_sub_d",
        ":matpac_keras_sub_init",
        ":tests_conftest",
        ":tests_init",
        ":tests_ref",
        ":tests_sub_conftest",
    }
    assert test.tags == ["fast"] and test.size is None
    assert targets["b_test"].tags == ["manual", "slow"] and targets["b_test"].size == "large"


def test_checks_fail_on_stale_build(small_repo, capsys):
    assert update_build.main(["--root", str(small_repo)]) == 0
    assert update_build.main(["--root", str(small_repo), "--check"]) == 0
    assert build_problems(small_repo) == []

    _write(small_repo, "matpac_keras/e.py", "from matpac_keras import a\n")
    assert update_build.main(["--root", str(small_repo), "--check"]) == 1
    assert '+    name = "matpac_keras_e",' in capsys.readouterr().out
    assert build_problems(small_repo) == ["matpac_keras/e.py is in no BUILD target's srcs"]

    (small_repo / "matpac_keras/e.py").unlink()
    (small_repo / "tests/ref.py").unlink()
    assert build_problems(small_repo) == [
        "target 'tests_ref' names tests/ref.py, which does not exist"
    ]


def test_generator_rejects_clashing_test_names(small_repo):
    _write(small_repo, "tests/c_test.py")
    with pytest.raises(SystemExit, match="tests/sub/c_test.py and tests/c_test.py"):
        update_build.collect_targets(small_repo)


def test_package_init_importing_its_own_module_is_no_loop(small_repo):
    # cli/__init__.py imports cli/quiet.py: quiet's target must not need the __init__ back.
    _write(small_repo, "matpac_keras/sub/__init__.py", "from matpac_keras.sub import d\n")
    targets = {t.name: t for t in update_build.collect_targets(small_repo)}
    assert ":matpac_keras_sub_d" in targets["matpac_keras_sub_init"].deps
    assert ":matpac_keras_sub_init" not in targets["matpac_keras_sub_d"].deps
    assert ":matpac_keras_sub_init" in targets["matpac_keras_sub_c"].deps


def test_generator_rejects_import_loops(small_repo):
    _write(small_repo, "matpac_keras/a.py", "from matpac_keras import b\n")
    with pytest.raises(SystemExit, match="dependency cycle") as raised:
        update_build.collect_targets(small_repo)
    loop = str(raised.value).split("cycle ")[1].split(" -> ")
    assert loop[0] == loop[-1] and set(loop) == {"matpac_keras_a", "matpac_keras_b"}
