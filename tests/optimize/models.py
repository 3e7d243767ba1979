"""A real model that no fusion tool can fuse: sigmoid self-attention.

Sigmoid attention (Ramapuram et al., 2024, "Theory, Analysis, and Best Practices for
Sigmoid Self-Attention") replaces the row softmax by an element-wise sigmoid with a
-log(n) bias. Every attention fusion in onnxruntime.transformers and onnxscript matches
a Softmax, so this encoder exports fine and stays unfused: the honest input for
``optimize --strict``. Everything else (LayerNorm after the residual Add, erf GELU) is
standard and does fuse.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SigmoidAttention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_size = heads, hidden // heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x, mask):
        b, s, h = x.shape

        def split(t):
            return t.view(b, s, self.heads, self.head_size).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)
        n = mask.sum(-1).clamp(min=1).to(x.dtype).view(b, 1, 1, 1)
        weights = torch.sigmoid(scores - torch.log(n)) * mask.view(b, 1, 1, s).to(x.dtype)
        context = (weights @ v).transpose(1, 2).reshape(b, s, h)
        return self.out(context)


class Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int) -> None:
        super().__init__()
        self.attention = SigmoidAttention(hidden, heads)
        self.norm1 = nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate = nn.Linear(hidden, intermediate)
        self.output = nn.Linear(intermediate, hidden)
        self.norm2 = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x, mask):
        x = self.norm1(x + self.attention(x, mask))
        return self.norm2(x + self.output(nn.functional.gelu(self.intermediate(x))))


class SigmoidAttentionEncoder(nn.Module):
    def __init__(self, vocab: int = 30522, hidden: int = 64, heads: int = 4, layers: int = 2, positions: int = 128) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(positions, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(Layer(hidden, heads, 2 * hidden) for _ in range(layers))

    def forward(self, input_ids, attention_mask):
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.norm(self.word_embeddings(input_ids) + self.position_embeddings(pos))
        for layer in self.layers:
            x = layer(x, attention_mask)
        return x


def build_sigmoid_attention_encoder() -> nn.Module:
    return SigmoidAttentionEncoder()
