"""The MATPAC training step on the PyTorch backend (autograd; one device)."""

import torch


def train_step(model, data) -> dict:
    """Forward, `backward()`, then EMA / optimizer / centre under `torch.no_grad()`."""
    optimizer = model.optimizer
    model.zero_grad()
    outputs = model.training_outputs(data)
    optimizer.scale_loss(outputs["loss"]).backward()
    variables = model.trainable_variables
    grads = [variable.value.grad for variable in variables]
    with torch.no_grad():
        extras = model.pre_update(grads)
        optimizer.apply(grads, variables)
        return model.post_update(outputs, **extras)
