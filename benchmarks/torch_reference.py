"""A plain-PyTorch MATPAC encoder and embedding loop (the official inference path, SPEC 6).

Written for the benchmark's side-by-side baseline: the same maths as the authors' PyTorch
inference wrapper (torch.stft front end, a per-chunk loop for "precise"), loading the same
official-layout state_dict as our converter, so outputs can be compared number for number.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from matpac_keras.frontend import LOGMEL_MEAN, LOGMEL_STD, mel_filterbank


class TorchMatpacEncoder(torch.nn.Module):
    def __init__(self, state: dict, num_heads: int):
        super().__init__()
        self.state = {
            k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in state.items()
        }
        self.num_heads = num_heads
        self.depth = len(
            {k.split(".")[2] for k in state if k.startswith("student_encoder.blocks.")}
        )
        self.mel = torch.from_numpy(mel_filterbank())
        self.window = torch.hann_window(400)

    def logmel(self, waveform: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(waveform, 400, 160, 400, self.window, center=False, return_complex=True)
        power = spec.abs() ** 2  # [B, 201, T]
        logmel = torch.log(
            torch.einsum("bft,fm->bmt", power, self.mel) + torch.finfo(torch.float32).eps
        )
        return (logmel - LOGMEL_MEAN) / LOGMEL_STD

    def _linear(self, x, prefix):
        return F.linear(x, self.state[prefix + "weight"], self.state[prefix + "bias"])

    def _block(self, x, p):
        s = self.state
        b, n, d = x.shape
        h = F.layer_norm(x, (d,), s[p + "norm1.weight"], s[p + "norm1.bias"], 1e-6)
        qkv = self._linear(h, p + "attn.qkv.").reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self._linear(a, p + "attn.proj.")
        h = F.layer_norm(x, (d,), s[p + "norm2.weight"], s[p + "norm2.bias"], 1e-6)
        return x + self._linear(F.gelu(self._linear(h, p + "mlp.fc1.")), p + "mlp.fc2.")

    def encode(self, logmel):
        s = self.state
        x = F.conv2d(
            logmel[:, None], s["patch_embed.proj.weight"], s["patch_embed.proj.bias"], stride=16
        )
        d, nf, nt = x.shape[1:]
        pos = s["pos_embed"][0, 1:].reshape(nf, -1, d)[:, :nt].reshape(1, -1, d)
        x = x.flatten(2).transpose(1, 2) + pos
        x = torch.cat([s["cls_token"].expand(len(x), -1, -1), x], 1)
        for i in range(self.depth):
            x = self._block(x, f"student_encoder.blocks.{i}.")
        x = F.layer_norm(
            x, (d,), s["student_encoder.norm.weight"], s["student_encoder.norm.bias"], 1e-6
        )
        return x[:, 1:].reshape(len(x), nf, nt, d).permute(0, 2, 1, 3).reshape(len(x), nt, nf * d)

    @torch.no_grad()
    def embed(self, waveform: torch.Tensor, mode: str, chunk: int) -> torch.Tensor:
        logmel = self.logmel(waveform)
        multiple = chunk if mode == "fast" else 16
        logmel = F.pad(
            logmel, (0, math.ceil(logmel.shape[-1] / multiple) * multiple - logmel.shape[-1])
        )
        if mode == "fast":
            chunks = logmel.split(chunk, dim=-1)
            encoded = self.encode(torch.cat(chunks, 0))  # all chunks in one batch, chunk-major
            frames = encoded.reshape(len(chunks), len(logmel), *encoded.shape[1:]).transpose(0, 1)
            frames = frames.flatten(1, 2)
        else:
            frames = torch.cat([self.encode(c) for c in logmel.split(chunk, dim=-1)], 1)
        return frames.mean(1)
