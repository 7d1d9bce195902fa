"""What transformers makes of model folders: tests/interop.rs compares it with lmloop.

Reads a JSON request on stdin: {"folders": [...], "text": str, "ids": [int, ...]}.
For each folder, loads the model with AutoModelForCausalLM and the tokenizer with
AutoTokenizer, and writes one JSON object per folder (a list, on stdout) with the
model class, the config keys the tests check, the tokenizer's special tokens, its ids
for `text` (no special tokens added) and their decoding, and the float32 logits of
`ids` (one sequence, all positions).
"""
import json
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer


def view(folder, text, ids):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    config = model.config
    modules = {type(m).__name__ for m in model.modules()}
    encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
    return {
        "class": type(model).__name__,
        "uses_conv1d": "Conv1D" in modules,
        "config": {
            key: getattr(config, key, None)
            for key in [
                "model_type", "vocab_size", "n_positions", "max_position_embeddings", "n_inner",
                "intermediate_size", "num_key_value_heads", "rms_norm_eps", "layer_norm_epsilon",
                "activation_function", "tie_word_embeddings", "bos_token_id", "eos_token_id",
            ]
        },
        "rope_theta": (getattr(config, "rope_parameters", None) or {}).get("rope_theta"),
        "tied": model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr(),
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "eos_token_id": tokenizer.eos_token_id,
        "ids": encoded,
        "decoded": tokenizer.decode(encoded),
        "logits": logits.tolist(),
    }


def main():
    request = json.load(sys.stdin)
    out = [view(f, request["text"], request["ids"]) for f in request["folders"]]
    json.dump({"transformers": transformers.__version__, "models": out}, sys.stdout)


if __name__ == "__main__":
    main()
