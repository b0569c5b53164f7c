"""Tests for the torch-free checkpoint reader against the fixtures and against torch itself."""

import struct
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from matpac_keras.errors import InputError
from matpac_keras.torch_checkpoint import CheckpointError, find_state_dict, load_torch_checkpoint

pytestmark = pytest.mark.single_backend


def _flatten(tree: dict, prefix: str = "") -> dict:
    """Nested dicts -> {"outer/inner": value}, the key layout of the fixture npz files."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[prefix + key] = value
    return flat


@pytest.mark.parametrize("name", ["train_full", "encoder_only"])
def test_matches_fixture_npz(fixtures_dir, name):
    loaded = load_torch_checkpoint(fixtures_dir / f"{name}.pt")
    expected = np.load(fixtures_dir / f"{name}.npz")
    flat = _flatten(loaded)
    assert sorted(flat) == sorted(expected.files)
    for key in expected.files:
        assert isinstance(flat[key], np.ndarray), key
        assert flat[key].dtype == expected[key].dtype, key
        assert flat[key].shape == expected[key].shape, key
        np.testing.assert_array_equal(flat[key], expected[key], err_msg=key)


def test_train_full_keeps_teachers_nested(fixtures_dir):
    loaded = load_torch_checkpoint(fixtures_dir / "train_full.pt")
    assert isinstance(loaded["_ema"], dict) and isinstance(loaded["_cls_head_ema"], dict)
    assert "blocks.0.norm1.weight" in loaded["_ema"]
    assert "last_layer.weight_g" in loaded["_cls_head_ema"]
    assert "cls_head_loss.center" in loaded
    assert not any("/" in key for key in loaded)


def test_find_state_dict_unwraps_common_wrappers():
    sd = {"w": np.zeros(2)}
    assert find_state_dict(sd) is sd
    assert find_state_dict({"model": sd, "epoch": 3}) is sd
    assert find_state_dict({"state_dict": sd}) is sd
    assert find_state_dict({"model": {"module": sd}}) is sd
    assert find_state_dict({"model": "not a dict", "w": 1}) == {"model": "not a dict", "w": 1}


def _assert_same_as_torch(ours: dict, theirs: dict):
    torch = pytest.importorskip("torch")
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        if isinstance(value, dict):
            _assert_same_as_torch(ours[key], value)
        elif isinstance(value, torch.Tensor):
            ref = value.detach()
            ref = ref.float() if ref.dtype == torch.bfloat16 else ref
            assert ours[key].dtype == ref.numpy().dtype, key
            assert ours[key].shape == tuple(ref.shape), key
            np.testing.assert_array_equal(ours[key], ref.numpy(), err_msg=key)
        else:
            assert ours[key] == value, key


def _save_and_load(obj, tmp_path) -> dict:
    torch = pytest.importorskip("torch")
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    return load_torch_checkpoint(path)


def test_dtypes_match_torch(tmp_path):
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(3, 5, generator=gen) * 100
    obj = {
        "f16": base.half(),
        "bf16": base.bfloat16(),
        "f32": base,
        "f64": base.double(),
        "i64": torch.randint(-(2**40), 2**40, (7,), generator=gen),
        "i32": torch.randint(-(2**30), 2**30, (2, 2), generator=gen, dtype=torch.int32),
        "u8": torch.randint(0, 256, (4,), generator=gen, dtype=torch.uint8),
        "bool": base > 0,
        "scalar_tensor": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
    }
    loaded = _save_and_load(obj, tmp_path)
    assert loaded["bf16"].dtype == np.float32
    # bfloat16 -> float32 is exact, and bfloat16 rounding really happened (not the f32 values).
    assert not np.array_equal(loaded["bf16"], loaded["f32"])
    _assert_same_as_torch(loaded, obj)


def test_views_sharing_one_storage(tmp_path):
    torch = pytest.importorskip("torch")
    base = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    obj = {
        "base": base,
        "transposed": base.t(),
        "sliced": base[1:5:2, 3::2],
        "row": base[4],
        "expanded": base[2:3].expand(3, 8),
        "nested": {"deeper": {"col": base[:, 5]}, "count": 3, "name": "x", "f": 0.5},
    }
    loaded = _save_and_load(obj, tmp_path)
    with zipfile.ZipFile(tmp_path / "ckpt.pt") as archive:
        assert sum("/data/" in n for n in archive.namelist()) == 1  # one shared storage
    _assert_same_as_torch(loaded, obj)
    assert isinstance(loaded["nested"]["deeper"], dict)


def test_weight_norm_state_dict_and_parameters(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layer = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(6, 4))
    state = layer.state_dict()
    assert "parametrizations.weight.original0" in state
    loaded = _save_and_load({"model": state, "epoch": 7}, tmp_path)
    assert loaded["epoch"] == 7
    _assert_same_as_torch(find_state_dict(loaded), state)
    # keep_vars=True pickles nn.Parameter objects (torch._utils._rebuild_parameter).
    params = dict(layer.state_dict(keep_vars=True))
    assert isinstance(params["bias"], torch.nn.Parameter)
    _assert_same_as_torch(_save_and_load(params, tmp_path), params)


def test_refuses_forbidden_global_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", payload)
    with pytest.raises(ValueError, match=r"evil\.pt.*forbidden global os\.system"):
        load_torch_checkpoint(path)
    assert not marker.exists()


def test_truncated_file(fixtures_dir, tmp_path):
    data = (fixtures_dir / "encoder_only.pt").read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.pt.*truncated"):
        load_torch_checkpoint(path)


def test_legacy_missing_non_dict_and_garbage_files(tmp_path):
    torch = pytest.importorskip("torch")
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match=r"legacy\.pt.*legacy"):
        load_torch_checkpoint(legacy)
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_torch_checkpoint(tmp_path / "absent.pt")
    tensor_only = tmp_path / "tensor_only.pt"
    torch.save(torch.ones(2), tensor_only)
    with pytest.raises(ValueError, match=r"tensor_only\.pt.*expected a pickled dict"):
        load_torch_checkpoint(tensor_only)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"hello world")
    with pytest.raises(ValueError, match=r"garbage\.pt.*not a torch\.save"):
        load_torch_checkpoint(garbage)


def _unicode(text: str) -> bytes:
    return b"X" + struct.pack("<I", len(text.encode())) + text.encode()


def _crafted_checkpoint(path, size, stride, numel=1, data=b"\x00\x00\x80?"):
    """A torch.save zip of {"weight": tensor} written opcode by opcode: any declared layout."""

    def ints(values):
        return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"

    pickled = (
        b"\x80\x02}(" + _unicode("weight") + b"ctorch._utils\n_rebuild_tensor_v2\n("
        b"(" + _unicode("storage") + b"ctorch\nFloatStorage\n" + _unicode("0") + _unicode("cpu")
        + b"J" + struct.pack("<i", numel) + b"tQ"
        + b"K\x00" + ints(size) + ints(stride) + b"\x89ccollections\nOrderedDict\n)RtRu."
    )  # fmt: skip
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/data/0", data)
        archive.writestr("archive/version", "3\n")


def test_crafted_file_loads_as_torch_loads_it(tmp_path):
    path = tmp_path / "one.pt"
    _crafted_checkpoint(path, size=(1,), stride=(1,))
    np.testing.assert_array_equal(load_torch_checkpoint(path)["weight"], np.ones(1, np.float32))
    torch = pytest.importorskip("torch")
    assert torch.load(path, weights_only=True)["weight"].tolist() == [1.0]


def test_tensor_larger_than_its_storage_fails_fast(tmp_path):
    # The 518-byte file: a 32768 x 32768 (stride-0) view of one 4-byte float made the
    # reader allocate 4 GiB (5 GB peak, 9 s here); it must be refused before any allocation.
    path = tmp_path / "bomb.pt"
    _crafted_checkpoint(path, size=(32768, 32768), stride=(0, 0))
    assert path.stat().st_size < 600
    tracemalloc.start()
    started = time.monotonic()
    with pytest.raises(CheckpointError, match=r"bomb\.pt: tensor 'weight': declares shape") as e:
        load_torch_checkpoint(path)
    elapsed = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "(32768, 32768)" in str(e.value) and "storage of 4 bytes" in str(e.value)
    assert isinstance(e.value, InputError)
    assert peak < 10 * 2**20 and elapsed < 5, (peak, elapsed)


def test_storage_larger_than_its_record_is_refused(tmp_path):
    path = tmp_path / "short_storage.pt"
    _crafted_checkpoint(path, size=(1 << 20,), stride=(1,), numel=1 << 20)  # 4 MiB over 4 bytes
    with pytest.raises(CheckpointError, match=r"short_storage\.pt: storage archive/data/0 decl"):
        load_torch_checkpoint(path)
    past_end = tmp_path / "past_end.pt"
    _crafted_checkpoint(past_end, size=(2,), stride=(1,), numel=1)
    with pytest.raises(CheckpointError, match=r"past_end\.pt: tensor 'weight'"):
        load_torch_checkpoint(past_end)
