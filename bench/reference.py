"""PyTorch eager reference for `lmloop bench`.

The same architectures, parameter shapes, optimizer (AdamW with decay/no-decay
groups, global-norm clipping), batch shapes and thread count as lmloop, written
plainly in PyTorch eager mode. `lmloop bench` runs it in the same process run and
reports lmloop's throughput as a ratio to this one.

Prints one JSON object on stdout.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        e = a.n_embd
        if a.arch == "gpt2":
            self.c_attn = nn.Linear(e, 3 * e, bias=True)
            self.c_proj = nn.Linear(e, e, bias=True)
        else:
            self.q_proj = nn.Linear(e, e, bias=False)
            self.k_proj = nn.Linear(e, e, bias=False)
            self.v_proj = nn.Linear(e, e, bias=False)
            self.o_proj = nn.Linear(e, e, bias=False)

    def qkv(self, x):
        b, t, c = x.shape
        nh = self.a.n_head
        if self.a.arch == "gpt2":
            q, k, v = self.c_attn(x).split(c, dim=2)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        heads = lambda z: z.view(b, t, nh, c // nh).transpose(1, 2)  # (B, nh, T, hs)
        return heads(q), heads(k), heads(v)

    def out(self, y):
        b, nh, t, hs = y.shape
        y = y.transpose(1, 2).contiguous().view(b, t, nh * hs)
        return self.c_proj(y) if self.a.arch == "gpt2" else self.o_proj(y)


def rotate(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        e, h = a.n_embd, a.mlp_hidden
        self.attn = Attention(a)
        if a.arch == "gpt2":
            self.ln_1 = nn.LayerNorm(e)
            self.ln_2 = nn.LayerNorm(e)
            self.c_fc = nn.Linear(e, h)
            self.c_proj = nn.Linear(h, e)
        else:
            self.ln_1 = nn.RMSNorm(e, eps=1e-5)
            self.ln_2 = nn.RMSNorm(e, eps=1e-5)
            self.gate_proj = nn.Linear(e, h, bias=False)
            self.up_proj = nn.Linear(e, h, bias=False)
            self.down_proj = nn.Linear(h, e, bias=False)

    def mlp(self, x):
        if self.a.arch == "gpt2":
            return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    def forward(self, x, rope, cache=None, pos=None):
        q, k, v = self.attn.qkv(self.ln_1(x))
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            kc, vc = cache
            kc[:, :, pos : pos + 1] = k
            vc[:, :, pos : pos + 1] = v
            y = F.scaled_dot_product_attention(q, kc[:, :, : pos + 1], vc[:, :, : pos + 1])
        x = x + self.attn.out(y)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        self.wte = nn.Embedding(a.vocab_size, a.n_embd)
        if a.arch == "gpt2":
            self.wpe = nn.Embedding(a.block_size, a.n_embd)
            self.ln_f = nn.LayerNorm(a.n_embd)
        else:
            self.ln_f = nn.RMSNorm(a.n_embd, eps=1e-5)
            hs = a.n_embd // a.n_head
            inv = torch.exp(torch.arange(0, hs, 2).float() * (-math.log(10000.0) / hs))
            f = torch.outer(torch.arange(a.block_size).float(), inv)
            emb = torch.cat([f, f], dim=1)
            self.register_buffer("cos", emb.cos(), persistent=False)
            self.register_buffer("sin", emb.sin(), persistent=False)
        self.h = nn.ModuleList(Block(a) for _ in range(a.n_layer))
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, caches=None, pos=None):
        t = idx.shape[1]
        x = self.wte(idx)
        start = 0 if pos is None else pos
        if self.a.arch == "gpt2":
            x = x + self.wpe(torch.arange(start, start + t, device=idx.device))
            rope = None
        else:
            rope = (self.cos[start : start + t], self.sin[start : start + t])
        for i, block in enumerate(self.h):
            x = block(x, rope, None if caches is None else caches[i], pos)
        return self.ln_f(x) @ self.wte.weight.t()  # (B, T, V), tied


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="gpt2")
    for name, default in [("n-layer", 4), ("n-head", 4), ("n-embd", 128), ("block-size", 128),
                          ("vocab-size", 2048), ("mlp-hidden", 512), ("batch-size", 32),
                          ("steps", 30), ("warmup", 5), ("threads", 0),
                          ("sample-batch", 64), ("sample-steps", 256)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    a = p.parse_args()
    dev = torch.device(a.device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = GPT(a).to(dev)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.95))
    x = torch.randint(a.vocab_size, (a.batch_size, a.block_size), device=dev)
    y = torch.randint(a.vocab_size, (a.batch_size, a.block_size), device=dev)

    def step():
        # Mixed precision as PyTorch users write it: autocast around the forward pass.
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))
        opt.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    train_s = time.perf_counter() - t0
    tokens = a.steps * a.batch_size * a.block_size

    # Batched decoding with a key/value cache: all rows in lockstep; a row that reaches
    # the context length starts a new document (the cache is reused from position 0).
    model.eval()
    hs = a.n_embd // a.n_head
    caches = [(torch.zeros(a.sample_batch, a.n_head, a.block_size, hs, device=dev),
               torch.zeros(a.sample_batch, a.n_head, a.block_size, hs, device=dev)) for _ in range(a.n_layer)]
    with torch.no_grad():
        tok = torch.zeros(a.sample_batch, 1, dtype=torch.long, device=dev)
        pos = 0
        sync()
        t0 = time.perf_counter()
        for _ in range(a.sample_steps):
            logits = model(tok, caches, pos)[:, -1]
            tok = torch.multinomial(F.softmax(logits, dim=-1), 1)
            pos = (pos + 1) % a.block_size
            if pos == 0:
                tok = torch.zeros_like(tok)
        sync()
        sample_s = time.perf_counter() - t0
    print(json.dumps({
        "torch_version": torch.__version__,
        "device": str(dev),
        "precision": a.precision,
        "threads": torch.get_num_threads(),
        "train_tokens_per_second": tokens / train_s,
        "train_ms_per_step": 1000 * train_s / a.steps,
        "sample_tokens_per_second": a.sample_batch * a.sample_steps / sample_s,
    }))


if __name__ == "__main__":
    main()
