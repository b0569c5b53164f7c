"""Picks the training-step module of the active Keras backend, importing only that one."""

import importlib

import keras

_MODULES = {
    "tensorflow": "matpac_keras.train_steps.tensorflow_step",
    "jax": "matpac_keras.train_steps.jax_step",
    "torch": "matpac_keras.train_steps.torch_step",
}


def backend_train_step():
    """`train_step(model, *args)` for the active Keras backend."""
    backend = keras.backend.backend()
    if backend not in _MODULES:
        raise NotImplementedError(f"MATPAC training supports {sorted(_MODULES)}; not {backend!r}")
    return importlib.import_module(_MODULES[backend]).train_step
