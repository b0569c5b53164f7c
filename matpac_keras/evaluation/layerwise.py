"""Layer-wise learning-rate decay for fine-tuning: per-variable learning-rate multipliers.

Depth 0 is the patch embedding and cls token, depth i the i-th transformer block, depth L + 1
the final norm and the head; a variable at depth d learns at `decay ** (L + 1 - d)` times the
base rate (BEiT / MAE fine-tuning): `lr_multipliers` gives them to `optimizers.AdamW`.
"""

from matpac_keras.audio_classifier import MatpacAudioClassifier


def layer_depths(model: MatpacAudioClassifier) -> dict[str, int]:
    """Depth of each trainable variable of a classifier, by variable path."""
    backbone = model.backbone
    top = len(backbone.encoder.blocks) + 1
    depths = {v.path: top for v in model.trainable_variables}
    depths[backbone.cls_token.path] = 0
    for v in backbone.patch_embedding.trainable_variables:
        depths[v.path] = 0
    for i, block in enumerate(backbone.encoder.blocks):
        for v in block.trainable_variables:
            depths[v.path] = i + 1
    return depths


def lr_multipliers(model: MatpacAudioClassifier, decay: float) -> dict[str, float]:
    """`decay ** (L + 1 - depth)` per variable path; all 1 for decay 1."""
    if not 0 < decay <= 1:
        raise ValueError(f"layer decay must be in (0, 1]; got {decay}")
    depths = layer_depths(model)
    top = max(depths.values())
    return {path: float(decay ** (top - depth)) for path, depth in depths.items()}
