"""The MATPAC pretrainer: student, predictor, heads, EMA teachers and centre (SPEC section 4)."""

import keras
from keras import ops

from matpac_keras.backbone import MatpacBackbone, ShapeFreeModel
from matpac_keras.heads import ClassificationHead
from matpac_keras.layers import TransformerStack
from matpac_keras.losses import (
    classification_loss,
    multiple_choice_loss,
    prediction_loss,
    teacher_probabilities,
)
from matpac_keras.masking import gather_tokens, num_visible, random_shuffle_ids
from matpac_keras.predictor import MatpacPredictor
from matpac_keras.schedules import linear_ramp


@keras.saving.register_keras_serializable(package="matpac_keras")
class MatpacPretrainer(ShapeFreeModel):
    """Owns the student backbone, predictor, student head, teacher trunk, teacher head and centre.

    Args:
        backbone: MatpacBackbone. The student encoder f_theta (its patch embedding, positions and
            cls token are shared with the teacher, as in the official code).
        predictor_dim, predictor_depth, predictor_heads: the predictor's size (512, 8, 16).
        num_prediction_heads: int. 1 for MATPAC, 5 for MATPAC++.
        head_hidden_dim, head_bottleneck_dim, num_classes: classification head sizes
            (2048, 256, 2048).
        mask_ratio: float. Share of masked tokens. Defaults to 0.7.
        alpha: float. Weight of the prediction loss. Defaults to 0.5.
        student_temperature: float. tau_s. Defaults to 0.1.
        teacher_temperature: (start, end, steps). tau_t ramp. Defaults to (0.04, 0.07, 9827).
        mcl_temperature: (start, decay). MATPAC++ soft-assignment temperature
            T = start * decay**step. Defaults to (0.1, 0.99997).
    """

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
        alpha: float = 0.5,
        student_temperature: float = 0.1,
        teacher_temperature: tuple = (0.04, 0.07, 9827),
        mcl_temperature: tuple = (0.1, 0.99997),
        **kwargs,
    ):
        super().__init__(**kwargs)
        # === Layers ===
        self.backbone = backbone
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
            backbone.depth, backbone.num_heads, backbone.mlp_ratio, dtype="float32",
            name="teacher_encoder",
        )
        self.teacher_head = ClassificationHead(*head_sizes, dtype="float32", name="teacher_head")
        # === Config ===
        self.predictor_dim = predictor_dim
        self.predictor_depth = predictor_depth
        self.predictor_heads = predictor_heads
        self.num_prediction_heads = num_prediction_heads
        self.head_hidden_dim = head_hidden_dim
        self.head_bottleneck_dim = head_bottleneck_dim
        self.num_classes = num_classes
        self.mask_ratio = mask_ratio
        self.alpha = alpha
        self.student_temperature = student_temperature
        self.teacher_temperature = tuple(teacher_temperature)
        self.mcl_temperature = tuple(mcl_temperature)

    def build(self, input_shape=None):
        dim = self.backbone.embed_dim
        if not self.backbone.built:
            self.backbone.build(None)
        self.predictor.build((None, None, dim))
        self.student_head.build((None, None, dim))
        self.teacher_encoder.build((None, None, dim))
        self.teacher_head.build((None, None, dim))
        self.teacher_encoder.trainable = False  # the setter reaches the sub-layers built above
        self.teacher_head.trainable = False
        self.center = self.add_weight(
            shape=(1, 1, self.num_classes), initializer="zeros", trainable=False,
            dtype="float32", name="center",
        )
        self.built = True

    def teacher_temperature_at(self, step):
        start, end, steps = self.teacher_temperature
        return linear_ramp(step, start, end, int(steps))

    def mcl_temperature_at(self, step):
        start, decay = self.mcl_temperature
        return start * ops.power(decay, ops.cast(step, "float32"))

    def forward_with_mask(self, source, ids_shuffle, step=0):
        """One step's forward pass with a given mask permutation; returns a dict of tensors.

        Keys: z_hat_m [B, M, D] (the chosen head's prediction), z_m [B, M, D] (teacher),
        predictions [B, heads, M, D], student_logits, teacher_logits, teacher_probs [B, M, K],
        loss_pred and loss_cls [B, M], loss (scalar), teacher_temperature.
        """
        tokens = self.backbone.embed_patches(source)
        n_visible = num_visible(ops.shape(ids_shuffle)[1], self.mask_ratio)
        visible = gather_tokens(tokens, ids_shuffle[:, :n_visible])
        masked = gather_tokens(tokens, ids_shuffle[:, n_visible:])
        z_v = self.backbone.encoder(self.backbone.prepend_cls(visible))
        teacher_input = ops.cast(self.backbone.prepend_cls(masked), "float32")
        z_m = ops.stop_gradient(self.teacher_encoder(teacher_input)[:, 1:])
        predictions = ops.cast(self.predictor(z_v, ids_shuffle), "float32")
        per_head = prediction_loss(predictions, z_m[:, None])  # [B, heads, M]
        if self.num_prediction_heads == 1:
            loss_pred, z_hat_m = per_head[:, 0], predictions[:, 0]
        else:
            per_head = ops.transpose(per_head, (0, 2, 1))  # [B, M, heads]
            loss_pred = multiple_choice_loss(per_head, self.mcl_temperature_at(step))
            best = ops.argmin(per_head, axis=-1)  # [B, M]
            one_hot = ops.one_hot(best, self.num_prediction_heads, dtype=predictions.dtype)
            z_hat_m = ops.einsum("bmh,bhmd->bmd", one_hot, predictions)
        student_logits = ops.cast(self.student_head(z_hat_m), "float32")
        teacher_logits = ops.stop_gradient(self.teacher_head(z_m))
        temperature = self.teacher_temperature_at(step)
        teacher_probs = teacher_probabilities(teacher_logits, self.center, temperature)
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
        }

    def call(self, source, training=False):
        """Forward pass with a fresh random mask (the step schedules at step 0)."""
        ids = random_shuffle_ids(ops.shape(source)[0], self._num_tokens(source.shape))
        return self.forward_with_mask(source, ids)["loss"]

    def _num_tokens(self, shape) -> int:
        return self.backbone.num_freq_patches * (shape[2] // self.backbone.patch_size)

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "predictor_dim": self.predictor_dim,
            "predictor_depth": self.predictor_depth,
            "predictor_heads": self.predictor_heads,
            "num_prediction_heads": self.num_prediction_heads,
            "head_hidden_dim": self.head_hidden_dim,
            "head_bottleneck_dim": self.head_bottleneck_dim,
            "num_classes": self.num_classes,
            "mask_ratio": self.mask_ratio,
            "alpha": self.alpha,
            "student_temperature": self.student_temperature,
            "teacher_temperature": self.teacher_temperature,
            "mcl_temperature": self.mcl_temperature,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
