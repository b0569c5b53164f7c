"""An independent float64 NumPy reference of the ViT pieces (SPEC section 3), from torch layouts."""

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
