"""The encoder outside Keras: an exported `TokenFeatures` run by ONNX Runtime or OpenVINO.

`EmbeddingExtractor` encodes windows of normalised log-mel with
`TokenFeatures(backbone).predict_on_batch(windows)`: [B, mels, t] -> [B, L, t // patch, F * D]
(L = 1, or the backbone's depth with all layers). The classes here compute the same function
from a file exported once from the backbone, in another runtime:

    path = export_token_features(backbone, "enc.onnx")        # TensorFlow backend only
    encoder = OnnxRuntimeEncoder(path)                         # any backend, or none
    features = encoder(windows)                                # == TokenFeatures, within 1e-4

    encoder = cached_encoder(backbone, "openvino")             # export once, cached on disk

    key = model_file_key("matpac.keras")                       # no Keras: the file's content
    encoder = load_cached_encoder(key, "openvino")             # None until exported under key

The exported graph leaves the batch and the frames free, so windows of every length the
extractor cuts (multiples of the patch size up to the backbone's `max_frames`) go through one
file. OpenVINO compiles once per input shape (`OpenVinoEncoder` keeps one compiled model per
shape, `static_shapes=True`) or once for all (dynamic shapes). ONNX Runtime runs the one graph
for all shapes.

Each export is written with a sidecar `<path>.json` (the backbone's mel bins, patch size,
`max_frames`, frequency patches F, width D, depth, layers and F * D) so that a runtime checks its
inputs and says what is wrong, as the backbone itself does, instead of failing inside the
runtime; and so that an encoder loaded from the cache gives `NumpyEmbeddingExtractor` the sizes
it needs (`encoder.spec`) without the model being built.

The cache is keyed by what decides the exported function. `cached_encoder(backbone)` keys it by
the backbone's config and weights (`weights_fingerprint`: needs the model built); a CLI given a
model file keys it by the file's content (`model_file_key`: a `.keras` file's bytes, or a preset
folder's files), so that the next run finds the export before importing Keras at all. Hashing a
ViT-B's 341 MB takes about 0.5 s, so the content key of a file is remembered under its
identity (path, device, inode, size, mtime and ctime in ns): a file changed in any way is hashed
again.

Precision: float32 by default, equal to Keras's within float32 rounding. OpenVINO on a CPU with
bfloat16 support computes in bfloat16 unless told otherwise; `precision="bfloat16"` asks for it
(opt-in: about 1e-2 relative error).
"""

import hashlib
import json
import os
import pathlib
import shutil
import tempfile

import numpy as np
from absl import logging

from matpac_keras.model_path import content_digest
from matpac_keras.numpy_embedding import EncoderSpec

RUNTIMES = ("onnx", "openvino")
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml"}
PRECISIONS = ("float32", "bfloat16")
FORMAT_VERSION = 2  # bump when the exported graph changes (invalidates cached exports)


def _metadata_path(path) -> pathlib.Path:
    return pathlib.Path(f"{os.fspath(path)}.json")


def export_token_features(backbone, path, all_layers: bool = False) -> str:
    """Exports `TokenFeatures(backbone, all_layers)` to `path` (".onnx": ONNX; ".xml": OpenVINO
    IR, with its ".bin" beside it) and its sidecar `<path>.json`; returns `path` as a str.

    The input is `[batch, num_mels, frames]` float32 with batch and frames free. Keras exports
    from TensorFlow graphs: this needs `KERAS_BACKEND=tensorflow` (the weights are
    backend-independent: load the preset or `.keras` under TensorFlow to export it).

    Raises:
        ValueError: another suffix, or another backend.
    """
    import keras

    from matpac_keras.backbone import export_spectrogram_model
    from matpac_keras.embedding import TokenFeatures

    path = os.fspath(path)
    runtime = next((r for r, s in SUFFIXES.items() if path.endswith(s)), None)
    if runtime is None:
        raise ValueError(f"export path must end in .onnx or .xml (OpenVINO IR); got {path!r}")
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"exporting the encoder runs under KERAS_BACKEND=tensorflow (this process runs "
            f"{keras.backend.backend()!r}); the exported file then runs under any backend"
        )
    features = TokenFeatures(backbone, all_layers=all_layers)
    features(np.zeros((1, backbone.num_mels, backbone.patch_size), "float32"))  # build
    # TensorFlow's tracking traces each model's default signature from the shapes it was built
    # with; the backbone's must be its free-length input too (`export_spectrogram_model`).
    backbone._build_shapes_dict = {"spectrogram": backbone.input_shape_spec}
    export_spectrogram_model(features, backbone, path, runtime, False, None, features.export)
    metadata = {
        "format_version": FORMAT_VERSION,
        "runtime": runtime,
        "num_mels": backbone.num_mels,
        "patch_size": backbone.patch_size,
        "max_frames": backbone.max_frames,
        "num_freq_patches": backbone.num_freq_patches,
        "embed_dim": backbone.embed_dim,
        "depth": backbone.depth,
        "layers": backbone.depth if all_layers else 1,
        "width": backbone.num_freq_patches * backbone.embed_dim,
    }
    _metadata_path(path).write_text(json.dumps(metadata, indent=1))
    return path


class _ExportedEncoder:
    """Shared checks of an exported encoder: its sidecar metadata and the windows' shape."""

    runtime = None

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"no exported encoder at {self.path}")
        sidecar = _metadata_path(self.path)
        if not sidecar.is_file():
            raise ValueError(
                f"{self.path} has no {sidecar.name} beside it: export it with "
                "matpac_keras.encoder_runtime.export_token_features"
            )
        self.metadata = json.loads(sidecar.read_text())
        if self.metadata.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{self.path} was exported by another version of this module "
                f"(format {self.metadata.get('format_version')}, expected {FORMAT_VERSION}): "
                "export it again"
            )

    @property
    def spec(self) -> EncoderSpec:
        """The backbone's sizes (`NumpyEmbeddingExtractor`'s `backbone` argument)."""
        return EncoderSpec(**{k: self.metadata[k] for k in EncoderSpec.__dataclass_fields__})

    @property
    def layers(self) -> int:
        """L, the layers of the output: 1, or the backbone's depth (all layers)."""
        return self.metadata["layers"]

    def check(self, windows) -> np.ndarray:
        """`windows` as a C-contiguous float32 [B, mels, t]; raises ValueError unless t is a
        multiple of the patch size from one patch up to `max_frames`."""
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        mels, patch, most = (self.metadata[k] for k in ("num_mels", "patch_size", "max_frames"))
        if windows.ndim != 3 or windows.shape[1] != mels:
            raise ValueError(f"windows must be [batch, {mels}, frames]; got {windows.shape}")
        frames = windows.shape[2]
        if not patch <= frames <= most or frames % patch:
            raise ValueError(
                f"windows of {frames} frames: this encoder takes multiples of {patch} frames up "
                f"to {most}"
            )
        if windows.shape[0] == 0:
            raise ValueError("windows must hold at least one window")
        return windows

    def __call__(self, windows) -> np.ndarray:
        """Per-time-step features [B, L, t // patch, F * D] (float32) of log-mel windows
        [B, mels, t], as `TokenFeatures.predict_on_batch`."""
        return self._run(self.check(windows))

    def _run(self, windows: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class OnnxRuntimeEncoder(_ExportedEncoder):
    """An exported encoder (`.onnx`) run by ONNX Runtime on the CPU.

    Args:
        path: the `.onnx` file of `export_token_features` (with its sidecar `.json`).
        threads: int or None. Intra-op threads (None: ONNX Runtime's default, the cores).
    """

    runtime = "onnx"

    def __init__(self, path, threads: int | None = None):
        super().__init__(path)
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            self.path, options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def _run(self, windows: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: windows})[0]


class OpenVinoEncoder(_ExportedEncoder):
    """An exported encoder (`.xml` + `.bin`) compiled by OpenVINO for the CPU.

    Args:
        path: the `.xml` file of `export_token_features` (with its sidecar `.json`).
        precision: "float32" (default; OpenVINO would otherwise compute in bfloat16 on CPUs
            that support it) or "bfloat16".
        threads: int or None. Inference threads (None: OpenVINO's default, the cores).
        static_shapes: bool. Compile one model per input shape (the first window of a shape
            pays for its compilation) instead of one model for every shape. Defaults to True.
    """

    runtime = "openvino"

    def __init__(
        self,
        path,
        precision: str = "float32",
        threads: int | None = None,
        static_shapes: bool = True,
    ):
        super().__init__(path)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
        import openvino

        self.core = openvino.Core()
        self.config = {
            "INFERENCE_PRECISION_HINT": "f32" if precision == "float32" else "bf16",
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.precision = precision
        self.static_shapes = static_shapes
        self.model = self.core.read_model(self.path)
        self._compiled = {}
        if not static_shapes:
            self._compiled[None] = self.core.compile_model(self.model, "CPU", self.config)

    def compiled(self, shape: tuple):
        """The compiled model for inputs of `shape` (one per shape with `static_shapes`)."""
        key = tuple(shape) if self.static_shapes else None
        if key not in self._compiled:
            model = self.model.clone()
            model.reshape({model.inputs[0]: list(key)})
            self._compiled[key] = self.core.compile_model(model, "CPU", self.config)
        return self._compiled[key]

    def _run(self, windows: np.ndarray) -> np.ndarray:
        compiled = self.compiled(windows.shape)
        return compiled(windows)[compiled.outputs[0]]


ENCODERS = {"onnx": OnnxRuntimeEncoder, "openvino": OpenVinoEncoder}


def weights_fingerprint(backbone, all_layers: bool = False) -> str:
    """A hex digest of `backbone`'s config, weights and `all_layers`: the cache key of its
    exports (two backbones with equal digests compute the same function)."""
    from matpac_keras.backbone import backbone_fingerprint

    return backbone_fingerprint(backbone, all_layers=all_layers, format=FORMAT_VERSION)


def default_cache_dir() -> pathlib.Path:
    """`$MATPAC_ENCODER_CACHE`, else `$XDG_CACHE_HOME/matpac_keras/encoders` (~/.cache...)."""
    if os.environ.get("MATPAC_ENCODER_CACHE"):
        return pathlib.Path(os.environ["MATPAC_ENCODER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "matpac_keras" / "encoders"


def _export_path(cache_dir, key: str, runtime: str) -> pathlib.Path:
    folder = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"{key}-{runtime}" / f"encoder{SUFFIXES[runtime]}"


def load_cached_encoder(key: str, runtime: str, cache_dir=None, **options):
    """The encoder exported into `cache_dir` (default `default_cache_dir()`) under `key`, or
    None when there is none or its files no longer match their checksums (`cached_encoder`
    then exports it again). Imports no Keras. `options` as for `cached_encoder`."""
    if runtime not in ENCODERS:
        raise ValueError(f"runtime must be one of {RUNTIMES}; got {runtime!r}")
    path = _export_path(cache_dir, key, runtime)
    if not _metadata_path(path).is_file() or _cache_problem(path.parent):
        return None
    return ENCODERS[runtime](path, **options)


def cached_encoder(
    backbone,
    runtime: str,
    all_layers: bool = False,
    cache_dir=None,
    key: str | None = None,
    **options,
):
    """An `OnnxRuntimeEncoder` or `OpenVinoEncoder` of `backbone`, exported on first use into
    `cache_dir` (default `default_cache_dir()`) under `key` (default: `weights_fingerprint`),
    and loaded from there afterwards. The export is written to a temporary folder with the
    SHA-256 of its files (`checksums.json`) and renamed into place, so concurrent or killed
    runs never leave a partial file under the key; a cached folder whose files no longer match
    their checksums (truncated, changed, or from before checksums) is logged, removed and
    exported again.
    `options` go to the encoder class (`threads`, OpenVINO's `precision`, `static_shapes`).

    Exporting needs `KERAS_BACKEND=tensorflow` (`export_token_features`); loading does not.
    """
    if runtime not in ENCODERS:
        raise ValueError(f"runtime must be one of {RUNTIMES}; got {runtime!r}")
    key = key or weights_fingerprint(backbone, all_layers)
    cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = _export_path(cache_dir, key, runtime)
    folder = path.parent
    problem = _cache_problem(folder) if folder.exists() else None
    if problem:
        logging.warning("cached encoder %s: %s; exporting it again", folder, problem)
        aside = cache_dir / f".{key}-{runtime}-broken-{os.getpid()}"
        os.replace(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)
    if not folder.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
        try:
            export_token_features(backbone, staging / path.name, all_layers=all_layers)
            _write_checksums(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            os.rename(staging, folder)
        except OSError:  # another process got there first: use its export
            shutil.rmtree(staging, ignore_errors=True)
    return load_cached_encoder(key, runtime, cache_dir, **options)


CHECKSUMS = "checksums.json"


def _file_sha256(path: pathlib.Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _write_checksums(folder: pathlib.Path) -> None:
    """Records the SHA-256, size and modification stamp of every file of an export folder in
    its `checksums.json`."""
    sums = {}
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        st = file.stat()
        sums[file.name] = {
            "sha256": _file_sha256(file),
            "size": st.st_size,
            "stamp": [st.st_ino, st.st_mtime_ns],
        }
    (folder / CHECKSUMS).write_text(json.dumps(sums, indent=1) + "\n")


def _cache_problem(folder: pathlib.Path) -> str | None:
    """Why a cached export folder cannot be trusted (a file missing, truncated or changed
    since `_write_checksums`, or no checksums: an earlier version's or a damaged cache), or
    None when every file is as exported. A file of the recorded size, inode and modification
    time is taken as written (a start-up does not re-hash hundreds of MB); any other is
    hashed and compared."""
    try:
        sums = json.loads((folder / CHECKSUMS).read_text())
    except (OSError, ValueError):
        return f"no readable {CHECKSUMS}"
    if not isinstance(sums, dict) or not sums:
        return f"no checksums in {CHECKSUMS}"
    for name, expected in sums.items():
        if not isinstance(expected, dict) or "sha256" not in expected:
            return f"no checksum of {name} in {CHECKSUMS}"
        try:
            st = (folder / name).stat()
            if st.st_size != expected.get("size"):
                return f"{name} does not match its checksum (truncated or changed)"
            if [st.st_ino, st.st_mtime_ns] == expected.get("stamp"):
                continue
            actual = _file_sha256(folder / name)
        except OSError:
            return f"{name} is missing"
        if actual != expected["sha256"]:
            return f"{name} does not match its checksum (truncated or changed)"
    return None


def model_file_key(model, all_layers: bool = False, cache_dir=None) -> str:
    """The cache key of the exports of the model in `model` (a `.keras` file or a preset
    folder), from its content, `all_layers` and `FORMAT_VERSION`: found without building the
    model. The content digest is remembered in `cache_dir`/keys under the files' identity
    (`os.stat`: device, inode, size, mtime and ctime), so a file is hashed once until it
    changes.
    """
    path = pathlib.Path(model).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    identity = hashlib.blake2b(str(path).encode(), digest_size=16)
    for file in files:
        st = file.stat()
        stamp = (file.name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        identity.update(repr(stamp).encode())
    keys = (pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "keys"
    memo = keys / identity.hexdigest()
    try:
        content = memo.read_text().strip()
    except OSError:
        content = ""
    if len(content) != 32:
        content = content_digest(path)
        try:
            keys.mkdir(parents=True, exist_ok=True)
            staging = keys / f".{memo.name}.{os.getpid()}"
            staging.write_text(content)
            os.replace(staging, memo)
        except OSError:  # a read-only cache: hash again next time
            pass
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{content}:all_layers={all_layers}:format={FORMAT_VERSION}".encode())
    return "file-" + digest.hexdigest()
