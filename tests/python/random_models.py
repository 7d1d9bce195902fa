"""Writes random transformers models for tests/interop.rs to import as generation 0.

Usage: random_models.py OUT_DIR CORPUS_TEXT LMLOOP_TOKENIZER_JSON

- OUT_DIR/gpt2: a GPT2LMHeadModel over lmloop's byte-level tokenizer (the corpus's own),
  end-of-text as bos and eos.
- OUT_DIR/llama: a LlamaForCausalLM with grouped-query attention, an untied lm_head,
  non-default RMSNorm epsilon and rotary base, and a SentencePiece-style tokenizer
  (Metaspace BPE with <unk>, <s>, </s>) trained here on CORPUS_TEXT, so that its
  end-of-text token is </s>, not lmloop's <|endoftext|>.

Every parameter is drawn from N(0, 0.2²) (norm gains and biases included), so a
mis-mapped or transposed tensor changes the logits visibly. Writes OUT_DIR/reference.json:
per model, fixed token ids and transformers' float32 logits for them.
"""
import json
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast


def randomize(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    model.eval()
    return model


def reference(model, vocab_size, seed):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (20,), generator=generator).tolist()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    return {"ids": ids, "logits": logits.tolist()}


def main():
    out, corpus, lmloop_tokenizer = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    refs = {}

    eot = "<|endoftext|>"
    gpt2_tok = PreTrainedTokenizerFast(tokenizer_file=lmloop_tokenizer, bos_token=eot, eos_token=eot, unk_token=eot)
    eot_id = gpt2_tok.convert_tokens_to_ids(eot)
    gpt2 = randomize(GPT2LMHeadModel(GPT2Config(
        vocab_size=len(gpt2_tok), n_positions=48, n_embd=32, n_layer=2, n_head=4,
        bos_token_id=eot_id, eos_token_id=eot_id,
    )), 1)
    gpt2.save_pretrained(out / "gpt2")
    gpt2_tok.save_pretrained(out / "gpt2")
    refs["gpt2"] = reference(gpt2, len(gpt2_tok), 11)

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    bpe.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    bpe.train([corpus], trainers.BpeTrainer(vocab_size=180, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    llama_tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    llama = randomize(LlamaForCausalLM(LlamaConfig(
        vocab_size=len(llama_tok), hidden_size=32, intermediate_size=44, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 20000.0}, tie_word_embeddings=False,
        bos_token_id=llama_tok.bos_token_id, eos_token_id=llama_tok.eos_token_id,
    )), 2)
    llama.save_pretrained(out / "llama")
    llama_tok.save_pretrained(out / "llama")
    refs["llama"] = reference(llama, len(llama_tok), 12)

    (out / "reference.json").write_text(json.dumps(refs))


if __name__ == "__main__":
    main()
