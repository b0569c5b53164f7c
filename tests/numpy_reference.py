"""An independent float64 NumPy reference of MATPAC's pieces (SPEC sections 2-4).

The ViT pieces take weights in PyTorch layout (`linear`, `block`); `dense` takes a Keras kernel
[in, out]. Everything computes in float64.
"""

import math

import numpy as np


def layer_norm(x, weight, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def linear(x, state, prefix):
    return x @ state[prefix + "weight"].T.astype(np.float64) + state[prefix + "bias"]


def block(x, state, prefix, num_heads):
    """timm Block: x + Attn(LN(x)), x + MLP(LN(x)); state in PyTorch layout."""
    batch, tokens, dim = x.shape
    head = dim // num_heads
    h = layer_norm(x, state[prefix + "norm1.weight"], state[prefix + "norm1.bias"])
    qkv = linear(h, state, prefix + "attn.qkv.").reshape(batch, tokens, 3, num_heads, head)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    scores = q @ k.transpose(0, 1, 3, 2) * head**-0.5
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    attn = (scores / scores.sum(-1, keepdims=True)) @ v
    x = x + linear(
        attn.transpose(0, 2, 1, 3).reshape(batch, tokens, dim), state, prefix + "attn.proj."
    )
    h = layer_norm(x, state[prefix + "norm2.weight"], state[prefix + "norm2.bias"])
    return x + linear(gelu(linear(h, state, prefix + "mlp.fc1.")), state, prefix + "mlp.fc2.")


def patch_embed(spectrogram, weight, bias):
    """Conv2d(kernel = stride = p) over [B, F, T] -> frequency-major tokens [B, F/p * T/p, D]."""
    p = weight.shape[-1]
    batch, n_mels, frames = spectrogram.shape
    nf, nt = n_mels // p, frames // p
    out = np.zeros((batch, nf, nt, weight.shape[0]))
    for f in range(nf):
        for t in range(nt):
            patch = spectrogram[:, f * p : (f + 1) * p, t * p : (t + 1) * p]
            out[:, f, t] = np.einsum("bij,dij->bd", patch, weight[:, 0]) + bias
    return out.reshape(batch, nf * nt, -1)


def dense(x, kernel, bias=None):
    """Keras layout: `x @ kernel [in, out] + bias`."""
    out = np.asarray(x, np.float64) @ np.asarray(kernel, np.float64)
    return out if bias is None else out + np.asarray(bias, np.float64)


def softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def log_softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    shifted = x - x.max(axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis, keepdims=True))


def l2_normalize(x, eps=1e-12):
    """torch's F.normalize: `x / max(||x||, eps)` over the last axis."""
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def sincos_2d(dim, height, width):
    """SPEC section 2's positions [height * width, dim], frequency-major: the first half of the
    channels encodes the time (width) coordinate, the second half the frequency (height)."""
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4))
    table = np.zeros((height, width, dim))
    for f in range(height):
        for t in range(width):
            table[f, t] = np.concatenate(
                [np.sin(t * omega), np.cos(t * omega), np.sin(f * omega), np.cos(f * omega)]
            )
    return table.reshape(height * width, dim)
