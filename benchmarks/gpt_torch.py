"""The PyTorch side of ``benchmarks/gpt.py``: the same small GPT-2, written for PyTorch.

Imported only by the benchmark, and only when torch is installed (the optional ``reference``
extra: ``pip install -e ".[reference]"``). The model is the one `impl.transformers.gpt2` builds —
learned positions, pre-LN blocks with a fused query/key/value projection, tanh GELU, a final
layer norm and the output layer tied to the token embedding — in the plain style of a
single-file PyTorch GPT: one module per block, shapes on the lines. Attention uses
``torch.nn.functional.scaled_dot_product_attention`` with ``is_causal=True``, as a PyTorch user
would write it; the optimizer is ``torch.optim.AdamW``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, n_layers: int):
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d_model, eps=1e-5)
        self.qkv = nn.Linear(d_model, 3 * d_model)  # q | k | v, each [D] = H heads of K
        self.attn_out = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model, eps=1e-5)
        self.hidden = nn.Linear(d_model, 4 * d_model)
        self.ffn_out = nn.Linear(4 * d_model, d_model)
        for linear in (self.qkv, self.attn_out, self.hidden, self.ffn_out):
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
        for residual in (self.attn_out, self.ffn_out):  # GPT-2's 1/sqrt(2L) on the residual writes
            residual.weight.data.mul_(1 / math.sqrt(2 * n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)  # three [B, T, D]
        q, k, v = (
            z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v)
        )  # [B, H, T, K]
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, K]
        x = x + self.attn_out(o.transpose(1, 2).reshape(b, t, d))
        return x + self.ffn_out(F.gelu(self.hidden(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, context: int, d_model: int, n_heads: int, n_layers: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(context, d_model)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, n_layers) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model, eps=1e-5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        x = self.wte(tokens) + self.wpe(torch.arange(t, device=tokens.device))[None]  # [B, T, D]
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T  # [B, T, V], tied output layer


def training_step(
    vocab_size: int, context: int, d_model: int, n_heads: int, n_layers: int, *,
    lr: float = 1e-3, seed: int = 0, dtype=None,
):  # fmt: skip
    """``(model, step)`` where ``step(inputs, targets) -> loss`` is one AdamW step on the batch.

    ``dtype=torch.bfloat16`` runs the forward and backward under CPU autocast."""
    torch.manual_seed(seed)
    model = GPT(vocab_size, context, d_model, n_heads, n_layers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.01)

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> float:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            logits = model(inputs)
            loss = F.cross_entropy(logits.float().reshape(-1, vocab_size), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return model, step
