"""One MATPAC optimisation step per Keras backend (SPEC section 4).

The maths is backend-agnostic and lives in the pretrainer (`training_outputs`, `pre_update`,
`post_update`) and in `common.py` (pure functions: teacher EMA, collapse monitors);
`dispatch.py` imports the module of the active backend only. Each backend module computes the
gradients and applies the optimizer the way its Keras trainer does (keras-io
`custom_train_step_in_{tensorflow,jax,torch}`):

    tensorflow_step  tf.GradientTape; all-reduce and clipping of the gradients across replicas
    jax_step         stateless: jax.value_and_grad, StatelessScope, optimizer.stateless_apply
    torch_step       autograd: loss.backward(), then updates under torch.no_grad()
"""
