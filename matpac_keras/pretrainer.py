"""The MATPAC pretrainer, a keras-hub Task over the backbone: student, predictor, heads, EMA
teachers and centre (SPEC section 4)."""

import keras
import keras_hub
from keras import ops

from matpac_keras.audio import PCM16_SCALE
from matpac_keras.backbone import MatpacBackbone
from matpac_keras.frontend import LogMelSpectrogram
from matpac_keras.heads import ClassificationHead
from matpac_keras.layers import TransformerStack
from matpac_keras.losses import (
    center_update,
    classification_loss,
    multiple_choice_loss,
    prediction_loss,
    teacher_probabilities,
)
from matpac_keras.masking import MASK_SHAPES, gather_tokens, mask_permutation, num_visible
from matpac_keras.optimizers import AdamW, global_norm
from matpac_keras.predictor import MatpacPredictor
from matpac_keras.schedules import WarmupCosineDecay, exponential_decay, linear_ramp
from matpac_keras.train_steps.common import collapse_monitors, teacher_ema_updates
from matpac_keras.train_steps.dispatch import backend_train_step

CENTER_ON = ("probabilities", "logits")
EMA_ORDERS = ("before_update", "after_update")
TEACHER_INITS = ("copy", "independent")
BATCH_KEYS = ("source", "waveform", "ids_shuffle")
# Logged as running means over the epoch; "lr" and "teacher_temp" (tau_t) are logged as is.
AVERAGED_LOGS = (
    "loss",
    "loss_cls",
    "loss_pred",
    "grad_norm",
    "z_hat_m_std",
    "z_m_std",
    "teacher_perplexity",
    "teacher_classes",
    "argmax_agreement",
    "center_norm",
)


@keras.saving.register_keras_serializable(package="matpac_keras")
class MatpacPretrainer(keras_hub.models.Task):
    """Owns the student backbone, predictor, student head, teacher trunk, teacher head and centre.

    `fit` takes batches of normalised log-mel [B, num_mels, frames] (x only), or dicts
    `{"source": log-mel, "ids_shuffle": [B, tokens] int}` to impose the mask permutation;
    otherwise each step draws one from the model's own seeded generator. One step
    (`train_step`, SPEC section 4): forward -> teacher EMA with the student weights from
    *before* the update (skipped at step 0) -> gradients -> global-norm clipping -> optimizer;
    the centre moves with this step's teacher output and applies from the next step; the `step`
    counter (which drives tau_t, the EMA decays and the MATPAC++ temperature) then advances.
    The teachers and the centre are float32, non-trainable, and changed only by that step.
    Logs: running means over the epoch of loss, loss_cls, loss_pred, grad_norm (before
    clipping), the collapse monitors (SPEC section 4) and center_norm (the centre's L2 norm after
    this step's update; it nears the norm of one one-hot vector when the teacher collapses to a
    class) (under `tf.distribute` these are per-replica values averaged over the replicas), and
    this step's lr and teacher_temp (tau_t).
    Under mixed_float16 a step the loss scaler skips still moves the teachers, the centre and
    the step counter.

    Args:
        backbone: MatpacBackbone. The student encoder f_theta (its patch embedding, positions and
            cls token are shared with the teacher, as in the official code). Its dtype policy
            must equal this model's (pass the same `dtype`, e.g. "mixed_bfloat16", to both).
        predictor_dim, predictor_depth, predictor_heads: the predictor's size (512, 8, 16).
        num_prediction_heads: int. 1 for MATPAC, 5 for MATPAC++.
        head_hidden_dim, head_bottleneck_dim, num_classes: classification head sizes
            (2048, 256, 2048).
        mask_ratio: float. Share of masked tokens. Defaults to 0.7.
        num_masked_views: int. K, masked views of each crop per step. Defaults to 1 (the
            paper). With K > 1 (EAT's recipe): each crop gets K independent masks; the teacher
            encodes the *whole* crop once ([cls; all tokens], where K = 1 encodes [cls; the
            masked tokens] of its one mask, as the official code), and its classification
            h_omega and centred, sharpened probabilities are computed once on all tokens; each
            view's targets and teacher probabilities are those tokens gathered at its masked
            positions. The student encoder, predictor and student head run on the K views (one
            batch of B * K rows, row b * K + k = crop b, view k); the losses are means over
            views and tokens; the centre moves with the mean teacher output over the crops'
            tokens (each token once); the collapse monitors are computed over the K views'
            masked tokens, as with one view. Cost per step: `flops.training_step_flops`.
        mask_shape: "random" (the paper: uniform random tokens) or "inverse_block" (EAT,
            data2vec 2.0: visible tokens in square blocks; `masking.inverse_block_permutation`).
            Either way exactly `num_visible(tokens, mask_ratio)` tokens per example are visible.
            Defaults to "random".
        alpha: float. Weight of the prediction loss. Defaults to 0.5.
        student_temperature: float. tau_s. Defaults to 0.1.
        teacher_temperature: (start, end, steps). tau_t ramp. Defaults to (0.04, 0.07, 9827).
        mcl_temperature: (start, decay). MATPAC++ soft-assignment temperature
            T = start * decay**step; below 1e-4 the loss is the minimum over heads.
            Defaults to (0.1, 0.99997).
        center_momentum: float. Centre momentum. Defaults to 0.9.
        center_on: "probabilities" (the official code) or "logits" (the paper, DINO): what the
            centre averages. Defaults to "probabilities".
        encoder_ema: (start, end). Teacher-encoder EMA decay, linear over `total_steps`.
            Defaults to (0.99995, 0.99999).
        head_ema: (start, end). Teacher-head EMA decay. Defaults to (0.998, 1.0).
        total_steps: int. Length of the run in optimizer steps (the EMA ramps). Defaults to
            294816 (the paper's run).
        ema_order: "before_update" (the official code: EMA with the pre-update student, none at
            step 0) or "after_update" (DINO, M2D: EMA with the updated student, every step).
        teacher_init: "independent" (default: the official code's initialisation: the teacher
            encoder keeps its own Xavier draw, the teacher head its own MLP draw, normal(0.02)
            weights and zero biases, sharing only the weight-normed last layer with the
            student) or "copy" (both teachers start as exact copies of their students, as M2D
            and DINO do, and SPEC section 3 suggests). Initial values only: it matters to runs
            from scratch. With "copy" the teacher's targets start as the student's own and the
            prediction loss falls lower; only "independent" trains as the authors' code does
            (benchmarks/pretrain_vs_authors.md).
        seed: int or None. Seed of the masks (with the step counter). Defaults to None
            (random; pass one for runs that resume from a checkpoint with the same masks).
        preprocessor: None (the inputs are normalised log-mels; compute them in the input
            pipeline, e.g. with `MatpacAudioConverter`). A keras-hub Task argument.
        compile: bool. Compile with `compile()`'s defaults (the paper's AdamW and schedule)
            now, as keras-hub tasks do. Defaults to True.
        dtype: the dtype policy; defaults to the backbone's, and must equal it.

    `MatpacPretrainer.from_preset(backbone_preset, **arguments)` starts one on a converted or
    trained backbone; `save_to_preset(dir)` writes the backbone preset plus the pretrainer's
    config and its own weights (`task.json`, `task.weights.h5`), which `from_preset(dir)` loads.
    """

    backbone_cls = MatpacBackbone

    def __init__(
        self,
        backbone: MatpacBackbone,
        predictor_dim: int = 512,
        predictor_depth: int = 8,
        predictor_heads: int = 16,
        num_prediction_heads: int = 1,
        head_hidden_dim: int = 2048,
        head_bottleneck_dim: int = 256,
        num_classes: int = 2048,
        mask_ratio: float = 0.7,
        num_masked_views: int = 1,
        mask_shape: str = "random",
        alpha: float = 0.5,
        student_temperature: float = 0.1,
        teacher_temperature: tuple = (0.04, 0.07, 9827),
        mcl_temperature: tuple = (0.1, 0.99997),
        center_momentum: float = 0.9,
        center_on: str = "probabilities",
        encoder_ema: tuple = (0.99995, 0.99999),
        head_ema: tuple = (0.998, 1.0),
        total_steps: int = 294816,
        ema_order: str = "before_update",
        teacher_init: str = "independent",
        seed: int | None = None,
        preprocessor=None,
        compile: bool = True,
        **kwargs,
    ):
        _check_choice("center_on", center_on, CENTER_ON)
        _check_choice("ema_order", ema_order, EMA_ORDERS)
        _check_choice("teacher_init", teacher_init, TEACHER_INITS)
        _check_choice("mask_shape", mask_shape, MASK_SHAPES)
        if isinstance(num_masked_views, bool) or int(num_masked_views) != num_masked_views:
            raise ValueError(f"num_masked_views must be an integer; got {num_masked_views!r}")
        if num_masked_views < 1:
            raise ValueError(f"num_masked_views must be at least 1; got {num_masked_views}")
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must be in [0, 1]; got {center_momentum}")
        if int(total_steps) < 1:
            raise ValueError(f"total_steps must be at least 1; got {total_steps}")
        for name, value, size in (
            ("teacher_temperature", teacher_temperature, 3),
            ("mcl_temperature", mcl_temperature, 2),
            ("encoder_ema", encoder_ema, 2),
            ("head_ema", head_ema, 2),
        ):
            if len(value) != size:
                raise ValueError(f"{name} takes {size} numbers; got {value!r}")
        if preprocessor is not None:
            raise ValueError(
                "MatpacPretrainer takes normalised log-mel batches: preprocessor must be None "
                "(compute them in the input pipeline, e.g. with MatpacAudioConverter)"
            )
        dtype = keras.dtype_policies.get(kwargs.pop("dtype", None) or backbone.dtype_policy)
        if backbone.dtype_policy.name != dtype.name:
            raise ValueError(
                f"the backbone's dtype policy {backbone.dtype_policy.name!r} differs from the "
                f"pretrainer's {dtype.name!r}: pass the same `dtype` to both"
            )
        # === Config ===
        # (set before keras-hub's Task.__init__: under PyTorch only what is set after it is
        # tracked, which must be the layers and the state, not plain values)
        self.predictor_dim = predictor_dim
        self.predictor_depth = predictor_depth
        self.predictor_heads = predictor_heads
        self.num_prediction_heads = num_prediction_heads
        self.head_hidden_dim = head_hidden_dim
        self.head_bottleneck_dim = head_bottleneck_dim
        self.num_classes = num_classes
        self.mask_ratio = mask_ratio
        self.num_masked_views = int(num_masked_views)
        self.mask_shape = mask_shape
        self.alpha = alpha
        self.student_temperature = student_temperature
        self.teacher_temperature = tuple(teacher_temperature)
        self.mcl_temperature = tuple(mcl_temperature)
        self.center_momentum = center_momentum
        self.center_on = center_on
        self.encoder_ema = tuple(encoder_ema)
        self.head_ema = tuple(head_ema)
        self.total_steps = int(total_steps)
        self.ema_order = ema_order
        self.teacher_init = teacher_init
        self.seed = seed
        # Task.__init__ would compile before the layers exist: compiling comes last.
        super().__init__(dtype=dtype, compile=False, **kwargs)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = None
        self.predictor = MatpacPredictor(
            backbone.embed_dim,
            predictor_dim,
            predictor_depth,
            predictor_heads,
            backbone.mlp_ratio,
            num_prediction_heads,
            backbone.num_freq_patches,
            backbone.max_time_patches,
            dtype=self.dtype_policy,
            name="predictor",
        )
        head_sizes = (head_hidden_dim, head_bottleneck_dim, num_classes)
        self.student_head = ClassificationHead(
            *head_sizes, dtype=self.dtype_policy, name="student_head"
        )
        self.teacher_encoder = TransformerStack(
            backbone.depth,
            backbone.num_heads,
            backbone.mlp_ratio,
            dtype="float32",
            name="teacher_encoder",
        )
        self.teacher_head = ClassificationHead(*head_sizes, dtype="float32", name="teacher_head")
        # === State ===
        self.seed_generator = keras.random.SeedGenerator(seed, name="mask_seed_generator")
        self._trackers = [keras.metrics.Mean(name=name) for name in AVERAGED_LOGS]
        if compile:
            self.compile()

    def build(self, input_shape=None):
        if self.built:  # the weights do not depend on the input shape: built once (compile)
            return
        dim = self.backbone.embed_dim
        if not self.backbone.built:
            self.backbone.build(None)
        self.predictor.build((None, None, dim))
        self.student_head.build((None, None, dim))
        self.teacher_encoder.build((None, None, dim))
        self.teacher_head.build((None, None, dim))
        self.teacher_encoder.trainable = False  # the setter reaches the sub-layers built above
        self.teacher_head.trainable = False
        # Replicas each average their own tokens; "mean" aggregation makes it the global mean.
        self.center = self.add_weight(
            shape=(1, 1, self.num_classes),
            initializer="zeros",
            trainable=False,
            dtype="float32",
            aggregation="mean",
            name="center",
        )
        self.step = self.add_weight(
            shape=(),
            initializer="zeros",
            trainable=False,
            dtype="int32",
            aggregation="only_first_replica",
            name="step",
        )
        self.built = True
        if self.teacher_init == "copy":
            self.copy_students_to_teachers()
        else:
            self.initialize_independent_teachers()

    def teacher_pairs(self) -> tuple[list, list]:
        """(student, teacher) variable pairs of the encoder trunk and of the classification head.

        The encoder EMA covers the trunk only (blocks and final norm: the patch embedding,
        positions and cls token are shared); the head EMA covers g and v separately.
        """
        pairs = []
        for student, teacher in (
            (self.backbone.encoder, self.teacher_encoder),
            (self.student_head, self.teacher_head),
        ):
            s_vars, t_vars = student.weights, teacher.weights
            if [tuple(v.shape) for v in s_vars] != [tuple(v.shape) for v in t_vars]:
                raise ValueError(f"teacher {teacher.name} does not mirror student {student.name}")
            pairs.append(list(zip(s_vars, t_vars, strict=True)))
        return pairs[0], pairs[1]

    @classmethod
    def from_preset(cls, preset, load_weights: bool = True, **kwargs):
        """keras-hub's `Task.from_preset`: a pretrainer preset (with `task.json`) as saved, or a
        new pretrainer on a backbone preset, whose teacher encoder then starts as a copy of the
        preset's encoder, whatever `teacher_init` (an independent draw is for a start from
        scratch); the heads' teachers start as `teacher_init` says."""
        from keras_hub.src.utils.preset_utils import TASK_CONFIG_FILE, check_file_exists

        model = super().from_preset(preset, load_weights=load_weights, **kwargs)
        if load_weights and not check_file_exists(preset, TASK_CONFIG_FILE):
            model.copy_students_to_teachers(heads=False)
        return model

    def copy_students_to_teachers(self, heads: bool = True) -> None:
        """Teachers := students (`teacher_init="copy"`); with `heads=False` the teacher encoder
        only (a start from a trained encoder)."""
        encoder, head = self.teacher_pairs()
        for pairs in (encoder, head) if heads else (encoder,):
            for student, teacher in pairs:
                # A copy: on JAX, a shared buffer could not be donated to the train step.
                teacher.assign(ops.copy(ops.cast(student, teacher.dtype)))

    def initialize_independent_teachers(self) -> None:
        """The official code's teachers (`teacher_init="independent"`): the teacher encoder keeps
        the Xavier draw it was built with; the teacher head's MLP gets weights from
        normal(0.02) (their `trunc_normal_(std=0.02)`, whose cut at +-2 is 100 std away) and
        zero biases; its weight-normed last layer (g, v) is the student's."""
        normal = keras.initializers.RandomNormal(stddev=0.02)
        for dense in self.teacher_head.mlp:
            dense.kernel.assign(normal(dense.kernel.shape, dtype="float32"))
            dense.bias.assign(ops.zeros(dense.bias.shape, dtype="float32"))
        for student, teacher in zip(
            self.student_head.last_layer.weights, self.teacher_head.last_layer.weights, strict=True
        ):
            teacher.assign(ops.copy(ops.cast(student, teacher.dtype)))

    def teacher_temperature_at(self, step):
        start, end, steps = self.teacher_temperature
        return linear_ramp(step, start, end, int(steps))

    def mcl_temperature_at(self, step):
        start, decay = self.mcl_temperature
        return exponential_decay(step, start, decay)

    def ema_decays_at(self, step):
        """(encoder decay lambda, head decay zeta), each linear over `total_steps`."""
        return (
            linear_ramp(step, *self.encoder_ema, self.total_steps),
            linear_ramp(step, *self.head_ema, self.total_steps),
        )

    def forward_with_mask(self, source, ids_shuffle, step=0):
        """One step's forward pass with given mask permutations; returns a dict of tensors.

        `ids_shuffle`: [B, tokens] with one view (K = 1), [B, K, tokens] with K views. Keys, with
        R = B rows (K = 1) or B * K rows (row b * K + k: crop b, view k): z_hat_m [R, M, D] (the
        chosen head's prediction), z_m [R, M, D] (teacher), predictions [R, heads, M, D],
        student_logits, teacher_logits, teacher_probs [R, M, classes], loss_pred and loss_cls
        [R, M], loss (scalar), teacher_temperature; with K > 1 also crop_teacher_logits and
        crop_teacher_probs [B, tokens, classes], the teacher's output on every token of a crop.
        """
        tokens = self.backbone.embed_patches(source)
        views = self.num_masked_views
        expected_rank = 2 if views == 1 else 3
        if len(ids_shuffle.shape) != expected_rank:
            raise ValueError(
                f"with num_masked_views={views}, ids_shuffle is "
                f"{'[batch, tokens]' if views == 1 else '[batch, views, tokens]'}; got shape "
                f"{tuple(ids_shuffle.shape)}"
            )
        n_visible = num_visible(ids_shuffle.shape[-1], self.mask_ratio)
        temperature = self.teacher_temperature_at(step)
        crop = {}
        if views == 1:  # the official code: the teacher encodes [cls; masked tokens]
            masked = gather_tokens(tokens, ids_shuffle[:, n_visible:])
            teacher_input = ops.cast(self.backbone.prepend_cls(masked), "float32")
            z_m = ops.stop_gradient(self.teacher_encoder(teacher_input)[:, 1:])
            teacher_logits = ops.stop_gradient(self.teacher_head(z_m))
            teacher_probs = teacher_probabilities(teacher_logits, self.center, temperature)
        else:  # the teacher encodes [cls; all tokens] once; each view gathers its targets
            teacher_input = ops.cast(self.backbone.prepend_cls(tokens), "float32")
            z_all = ops.stop_gradient(self.teacher_encoder(teacher_input)[:, 1:])
            crop["crop_teacher_logits"] = ops.stop_gradient(self.teacher_head(z_all))
            crop["crop_teacher_probs"] = teacher_probabilities(
                crop["crop_teacher_logits"], self.center, temperature
            )
            tokens = ops.repeat(tokens, views, axis=0)
            ids_shuffle = ops.reshape(ids_shuffle, (-1, ids_shuffle.shape[-1]))
            masked_ids = ids_shuffle[:, n_visible:]
            z_m, teacher_logits, teacher_probs = (
                gather_tokens(ops.repeat(x, views, axis=0), masked_ids)
                for x in (z_all, crop["crop_teacher_logits"], crop["crop_teacher_probs"])
            )
        visible = gather_tokens(tokens, ids_shuffle[:, :n_visible])
        z_v = self.backbone.encoder(self.backbone.prepend_cls(visible))
        predictions = ops.cast(self.predictor(z_v, ids_shuffle), "float32")
        per_head = prediction_loss(predictions, z_m[:, None])  # [R, heads, M]
        if self.num_prediction_heads == 1:
            loss_pred, z_hat_m = per_head[:, 0], predictions[:, 0]
        else:
            per_head = ops.transpose(per_head, (0, 2, 1))  # [R, M, heads]
            loss_pred = multiple_choice_loss(per_head, self.mcl_temperature_at(step))
            best = ops.argmin(per_head, axis=-1)  # [R, M]
            one_hot = ops.one_hot(best, self.num_prediction_heads, dtype=predictions.dtype)
            z_hat_m = ops.einsum("bmh,bhmd->bmd", one_hot, predictions)
        student_logits = ops.cast(self.student_head(z_hat_m), "float32")
        loss_cls = classification_loss(student_logits, teacher_probs, self.student_temperature)
        loss = (1 - self.alpha) * ops.mean(loss_cls) + self.alpha * ops.mean(loss_pred)
        return {
            "z_hat_m": z_hat_m,
            "z_m": z_m,
            "predictions": predictions,
            "student_logits": student_logits,
            "teacher_logits": teacher_logits,
            "teacher_probs": teacher_probs,
            "loss_pred": loss_pred,
            "loss_cls": loss_cls,
            "loss": loss,
            "teacher_temperature": temperature,
            **crop,
        }

    def call(self, source, training=False):
        """The loss with a fresh mask from the model's generator, at the current step, of a
        log-mel batch [B, mels, frames] or of 16 kHz waveform crops [B, samples]."""
        source = as_logmel(source)
        return self.forward_with_mask(source, self.draw_mask(source), self.step)["loss"]

    def num_tokens(self, shape) -> int:
        """Patch tokens of a log-mel batch of this (static) shape."""
        return self.backbone.num_freq_patches * (shape[2] // self.backbone.patch_size)

    def draw_mask(self, source, replica_index=0, num_replicas: int = 1):
        """Mask permutations from uniform noise: [B, tokens] (one view), [B, K, tokens] (K views).

        "random" masks are `argsort` of the noise; "inverse_block" ones are ranked from it
        (`masking.mask_permutation`). The noise is keyed by (seed, step): the generator's counter
        is set from the step counter before drawing, so a run resumed from a checkpoint draws
        the masks the uninterrupted run would have. With several replicas, each draws the noise
        of the whole global batch and keeps its own rows: the masks a single device would draw.
        """
        state = self.seed_generator.state
        state.assign(ops.stack([state[0], ops.cast(self.step, state.dtype)]))
        batch = ops.shape(source)[0]
        per_example = (self.num_tokens(source.shape),)
        if self.num_masked_views > 1:
            per_example = (self.num_masked_views, *per_example)
        noise = keras.random.uniform((batch * num_replicas, *per_example), seed=self.seed_generator)
        if num_replicas > 1:
            noise = ops.take(
                ops.reshape(noise, (num_replicas, batch, *per_example)), replica_index, 0
            )
        return mask_permutation(
            noise, self.mask_shape, self.backbone.num_freq_patches, self.mask_ratio
        )

    # --- The training step's backend-agnostic parts (used by matpac_keras/train_steps). ---

    def unpack_batch(self, data):
        """`data` from `fit` -> (log-mel source, ids_shuffle or None).

        The batch is a log-mel [B, mels, frames], or 16 kHz waveform crops [B, samples]
        (float, or int16 PCM) whose log-mel is computed here, inside the step (on the
        accelerator), or a dict of "source" (log-mel) or "waveform", and optionally
        "ids_shuffle" (the masks' token permutations)."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if not isinstance(x, dict):
            return as_logmel(x), None
        unknown = sorted(set(x) - set(BATCH_KEYS))
        if unknown or ("source" in x) == ("waveform" in x):
            raise ValueError(
                f"a training batch dict takes the keys {BATCH_KEYS} (one of 'source' and "
                f"'waveform' required); got {sorted(x)}"
            )
        ids = x.get("ids_shuffle")
        source = x["source"] if "source" in x else as_logmel(x["waveform"])
        return source, None if ids is None else ops.cast(ids, "int32")

    def training_outputs(self, data, replica_index=0, num_replicas: int = 1) -> dict:
        """The forward pass of a training step: mask (given or drawn), then `forward_with_mask`."""
        source, ids_shuffle = self.unpack_batch(data)
        if ids_shuffle is None:
            ids_shuffle = self.draw_mask(source, replica_index, num_replicas)
        return self.forward_with_mask(source, ids_shuffle, self.step)

    def update_teachers(self) -> None:
        """Teacher EMA from the current student weights, at the current step's decays."""
        encoder_decay, head_decay = self.ema_decays_at(self.step)
        if self.ema_order == "before_update":  # the official code skips the EMA at step 0
            first = ops.equal(self.step, 0)
            encoder_decay = ops.where(first, 1.0, encoder_decay)
            head_decay = ops.where(first, 1.0, head_decay)
        for pairs, decay in zip(self.teacher_pairs(), (encoder_decay, head_decay), strict=True):
            # One tensor at a time: run eagerly (torch), only one new value exists at once.
            for student, teacher in pairs:
                teacher.assign(teacher_ema_updates([student], [teacher], decay)[0])

    def pre_update(self, grads) -> dict:
        """Before the optimizer step: the teacher EMA (official order), the gradient norm
        (before clipping, without loss scaling) and the learning rate of this update."""
        if self.ema_order == "before_update":
            self.update_teachers()
        grad_norm = global_norm(grads)
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            grad_norm = grad_norm / ops.cast(self.optimizer.dynamic_scale, "float32")
        learning_rate = ops.cast(self.optimizer.learning_rate, "float32")
        return {"grad_norm": grad_norm, "lr": learning_rate}

    def post_update(self, outputs: dict, grad_norm, lr) -> dict:
        """After the optimizer step: EMA (DINO order), centre, step counter, logs."""
        if self.ema_order == "after_update":
            self.update_teachers()
        key = "teacher_probs" if self.center_on == "probabilities" else "teacher_logits"
        teacher_output = outputs.get(f"crop_{key}", outputs[key])  # K > 1: all crop tokens
        center = center_update(self.center, teacher_output, self.center_momentum)
        self.center.assign(center)
        self.step.assign_add(1)
        values = {
            "loss": outputs["loss"],
            "loss_cls": ops.mean(outputs["loss_cls"]),
            "loss_pred": ops.mean(outputs["loss_pred"]),
            "grad_norm": grad_norm,
            **collapse_monitors(
                outputs["z_hat_m"],
                outputs["z_m"],
                outputs["student_logits"],
                outputs["teacher_probs"],
            ),
            "center_norm": ops.sqrt(ops.sum(ops.square(center))),
        }
        for tracker in self._trackers:
            tracker.update_state(values[tracker.name])
        logs = {tracker.name: tracker.result() for tracker in self._trackers}
        logs["lr"] = lr
        logs["teacher_temp"] = ops.convert_to_tensor(outputs["teacher_temperature"])
        return logs

    def train_step(self, *args):
        """SPEC section 4's step; `(data)` on TensorFlow and torch, `(state, data)` on JAX."""
        return backend_train_step()(self, *args)

    @property
    def metrics(self):
        return list(self._trackers)

    def compile(self, optimizer="auto", **kwargs):
        """`keras.Model.compile` (no loss needed); also builds the model and the optimizer, so
        that the step can read the loss scale and the learning rate from its first trace.

        `optimizer="auto"` (what the constructor compiles with, as keras-hub tasks do): the
        paper's AdamW (`optimizers.AdamW`: lr 3e-4, betas (0.9, 0.95), epsilon 1e-6, weight
        decay 0.05, global-norm clipping at 3) with a linear warm-up over the first 1/15 of
        `total_steps` (the paper's 20 of 300 epochs) and a cosine decay to 0 at `total_steps`.
        """
        if not self.built:
            self.build(None)
        if optimizer == "auto":
            schedule = WarmupCosineDecay(3e-4, self.total_steps // 15, self.total_steps)
            optimizer = AdamW(learning_rate=schedule)
        super().compile(optimizer=optimizer, **kwargs)
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        """Re-compiles a loaded model (Keras skips models with their own `compile`)."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    # The inputs are log-mel batches (or dicts of them): `fit` is keras.Model's, which takes any
    # Keras input (arrays, tf.data, keras.utils.PyDataset, generators) on every backend;
    # keras-hub's version maps a preprocessor over a tf.data pipeline it builds itself.
    def fit(self, *args, **kwargs):
        return keras.Model.fit(self, *args, **kwargs)

    def evaluate(self, *args, **kwargs):
        return keras.Model.evaluate(self, *args, **kwargs)

    def predict(self, *args, **kwargs):
        return keras.Model.predict(self, *args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        return keras.Model.train_on_batch(self, *args, **kwargs)

    def get_build_config(self):
        return {"input_shape": None}

    def build_from_config(self, config):
        self.build(None)

    def get_config(self):
        return {
            **super().get_config(),
            "predictor_dim": self.predictor_dim,
            "predictor_depth": self.predictor_depth,
            "predictor_heads": self.predictor_heads,
            "num_prediction_heads": self.num_prediction_heads,
            "head_hidden_dim": self.head_hidden_dim,
            "head_bottleneck_dim": self.head_bottleneck_dim,
            "num_classes": self.num_classes,
            "mask_ratio": self.mask_ratio,
            "num_masked_views": self.num_masked_views,
            "mask_shape": self.mask_shape,
            "alpha": self.alpha,
            "student_temperature": self.student_temperature,
            "teacher_temperature": self.teacher_temperature,
            "mcl_temperature": self.mcl_temperature,
            "center_momentum": self.center_momentum,
            "center_on": self.center_on,
            "encoder_ema": self.encoder_ema,
            "head_ema": self.head_ema,
            "total_steps": self.total_steps,
            "ema_order": self.ema_order,
            "teacher_init": self.teacher_init,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        return super().from_config(dict(config))


_FRONTEND = []  # one LogMelSpectrogram, made on first use: no variables, so not a sub-layer


def as_logmel(batch):
    """A batch as the model's input: a log-mel [B, mels, frames] as it is; 16 kHz waveform
    crops [B, samples] (float, or int16 PCM, scaled by 1 / 32768 as `audio.pcm16_to_float`)
    through the normalised log-mel front end (`LogMelSpectrogram`), in the caller's graph."""
    if len(batch.shape) == 3:
        return batch
    if len(batch.shape) != 2:
        raise ValueError(
            f"expected a log-mel batch [batch, mels, frames] or waveforms [batch, samples]; "
            f"got shape {tuple(batch.shape)}"
        )
    if keras.backend.standardize_dtype(batch.dtype) == "int16":
        batch = ops.cast(batch, "float32") / PCM16_SCALE
    if not _FRONTEND:
        _FRONTEND.append(LogMelSpectrogram())
    return _FRONTEND[0](batch)


def _check_choice(name: str, value: str, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")
