"""Hugging Face transformers `generate` reference for `lmloop bench`.

A `GPT2LMHeadModel` or `LlamaForCausalLM` of the same shape as lmloop's model (random
weights, tied embeddings), sampling with its key/value cache as its users would:
`generate(do_sample=True, top_k=0)` at temperature 1, the same batch and thread count
as lmloop. Like lmloop's plain decoding figure, every row starts from one token and
runs to the context length, again and again until `--sample-steps` tokens per row
are written. The end-of-text token is switched off so that no row stops early.

Prints one JSON object on stdout.
"""
import argparse
import json
import time

import torch
import transformers


def model_for(a):
    common = dict(vocab_size=a.vocab_size, tie_word_embeddings=True, bos_token_id=0, eos_token_id=None, pad_token_id=0)
    if a.arch == "gpt2":
        cfg = transformers.GPT2Config(
            n_positions=a.block_size, n_embd=a.n_embd, n_layer=a.n_layer, n_head=a.n_head, n_inner=a.mlp_hidden,
            activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)
    else:
        cfg = transformers.LlamaConfig(
            hidden_size=a.n_embd, intermediate_size=a.mlp_hidden, num_hidden_layers=a.n_layer,
            num_attention_heads=a.n_head, num_key_value_heads=a.n_head, max_position_embeddings=a.block_size,
            rms_norm_eps=1e-5, rope_theta=10000.0, attention_bias=False, mlp_bias=False, **common)
    return transformers.AutoModelForCausalLM.from_config(cfg).eval()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="gpt2")
    for name, default in [("n-layer", 4), ("n-head", 4), ("n-embd", 96), ("block-size", 128),
                          ("vocab-size", 2048), ("mlp-hidden", 384), ("threads", 0),
                          ("sample-batch", 64), ("sample-steps", 256)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = p.parse_args()
    dev = torch.device(a.device)
    transformers.logging.set_verbosity_error()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = model_for(a).to(dev)
    start = torch.zeros(a.sample_batch, 1, dtype=torch.long, device=dev)
    per_call = a.block_size - 1  # one starting token plus these fill the context

    def generate(new_tokens):
        return model.generate(start, attention_mask=torch.ones_like(start), do_sample=True, top_k=0, top_p=1.0,
                              temperature=1.0, max_new_tokens=new_tokens, min_new_tokens=new_tokens)

    with torch.no_grad():
        generate(8)  # warm-up
        written = 0
        t0 = time.perf_counter()
        while written < a.sample_steps:
            n = min(per_call, a.sample_steps - written)
            out = generate(n)
            assert out.shape == (a.sample_batch, n + 1), out.shape
            written += n
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    print(json.dumps({
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "sample_tokens_per_second": a.sample_batch * written / seconds,
    }))


if __name__ == "__main__":
    main()
