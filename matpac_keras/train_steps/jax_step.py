"""The MATPAC training step on the JAX backend: stateless, as Keras's JAX trainer requires.

Each phase runs the backend-agnostic pretrainer code inside a `keras.StatelessScope` that maps
the model's variables to the values in `state`; the new values are read back from the scope.
"""

import jax
import keras

TRAINABLE, NON_TRAINABLE, OPTIMIZER, METRICS = range(4)


def _variables(model) -> list:
    """The variables behind the four value lists of Keras's JAX `state`, in its order."""
    return [
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    ]


def _scope(model, values) -> keras.StatelessScope:
    mapping = [
        pair
        for variables, group in zip(_variables(model), values, strict=True)
        for pair in zip(variables, group, strict=True)
    ]
    return keras.StatelessScope(state_mapping=mapping)


def _read_back(model, scope, values, groups: tuple) -> list:
    values = list(values)
    variables = _variables(model)
    for index in groups:
        values[index] = [scope.get_current_value(v) for v in variables[index]]
    return values


def train_step(model, state, data):
    """Returns (logs, new state) from (state, data), without touching the variables."""
    state = list(state)

    def scaled_loss(trainable, non_trainable):
        values = [trainable, non_trainable, state[OPTIMIZER], state[METRICS]]
        with _scope(model, values) as scope:
            outputs = model.training_outputs(data)
            loss = model.optimizer.scale_loss(outputs["loss"])
        # The mask generator's state has moved on: hand its new value out.
        return loss, (outputs, _read_back(model, scope, values, (NON_TRAINABLE,))[NON_TRAINABLE])

    gradient_fn = jax.value_and_grad(scaled_loss, has_aux=True)
    (_, (outputs, state[NON_TRAINABLE])), grads = gradient_fn(
        state[TRAINABLE], state[NON_TRAINABLE]
    )
    with _scope(model, state) as scope:
        extras = model.pre_update(grads)
    state = _read_back(model, scope, state, (NON_TRAINABLE,))
    state[TRAINABLE], state[OPTIMIZER] = model.optimizer.stateless_apply(
        state[OPTIMIZER], grads, state[TRAINABLE]
    )
    with _scope(model, state) as scope:
        logs = model.post_update(outputs, **extras)
    state = _read_back(model, scope, state, (NON_TRAINABLE, METRICS))
    return logs, tuple(state)
