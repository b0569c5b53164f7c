"""One MATPAC optimisation step per Keras backend (SPEC section 4).

The maths is backend-agnostic and lives in the pretrainer (`training_outputs`, `pre_update`,
`post_update`) and in `common.py` (pure functions: teacher EMA, collapse monitors). Each
backend module only computes gradients and applies the optimizer the way its Keras trainer
does (keras-io `custom_train_step_in_{tensorflow,jax,torch}`):

    tensorflow_step  tf.GradientTape; all-reduce and clipping of the gradients across replicas
    jax_step         stateless: jax.value_and_grad, StatelessScope, optimizer.stateless_apply
    torch_step       autograd: loss.backward(), then updates under torch.no_grad()
"""

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
