//! Interop with Hugging Face transformers, checked against transformers itself: exported
//! checkpoints load there with the same logits and token ids, and models written by
//! transformers seed generation 0 with the logits transformers gives them.
//!
//! The tests run the Python of the project's virtual environment (`LMLOOP_TEST_PYTHON`,
//! else `.venv/bin/python`), into which `make test` installs the pinned transformers;
//! without it they fail, saying so.
mod common;

use common::*;
use lmloop::checkpoint::{self, Checkpoint, TrainingState};
use lmloop::config::ModelConfig;
use lmloop::model::Model;
use lmloop::tokenizer::Vocab;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tch::{nn, Device, Tensor};

/// Largest logit difference accepted between lmloop and transformers in float32.
const LOGIT_TOLERANCE: f64 = 1e-4;

/// Text whose ids both tokenizers must agree on: corpus words, unseen words, non-ASCII,
/// digits, a tab and a blank line.
const SAMPLE: &str = "the cat sees the moon. our queen fears a rose.\n\nUnseen wörds ✓ 42\tend";

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let python = std::env::var_os("LMLOOP_TEST_PYTHON").map(PathBuf::from).unwrap_or(if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    });
    let probe = Command::new(&python).args(["-c", "import torch, transformers"]).output();
    match probe {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "the interop tests need transformers, which {} cannot import ({}); `make test` installs the pinned version into .venv",
            python.display(),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ),
        Err(e) => panic!("the interop tests need Python with transformers; cannot run {}: {e}", python.display()),
    }
}

/// Runs a script of tests/python with `args` and `stdin`; returns its stdout.
fn run_python(script: &str, args: &[&Path], stdin: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    let mut child = Command::new(python())
        .arg(path)
        .args(args)
        .env("TOKENIZERS_PARALLELISM", "false")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// lmloop's float32 logits (T, V) of one sequence of `ids`.
fn lmloop_logits(model: &Model, ids: &[u32]) -> Tensor {
    let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    let x = Tensor::from_slice(&ids).view([1, -1]);
    tch::no_grad(|| model.forward(&x, false)).get(0)
}

/// Largest absolute difference between lmloop's logits and a JSON (T, V) array.
fn max_difference(ours: &Tensor, theirs: &Value) -> f64 {
    let rows: Vec<Vec<f32>> = serde_json::from_value(theirs.clone()).unwrap();
    let theirs = Tensor::from_slice(&rows.concat()).view([rows.len() as i64, -1]);
    assert_eq!(ours.size(), theirs.size(), "logits of different shapes");
    (ours - theirs).abs().max().double_value(&[])
}

/// The JSON header of a safetensors file.
fn safetensors_header(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&bytes[8..8 + n]).unwrap()
}

fn train(root: &Path, config: &str, data: &Path, out: &Path) {
    let cfg = root.join(format!("{}.toml", out.file_name().unwrap().to_string_lossy()));
    std::fs::write(&cfg, config).unwrap();
    let r = lmloop(
        root,
        &["train", "--config", cfg.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()],
    );
    assert_eq!(r.0, 0, "train failed: {}", r.2);
}

#[test]
fn exported_checkpoints_load_in_transformers_with_the_same_logits_and_token_ids() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join("corpus");
    prepared(&data, 300);
    let tiny = std::fs::read_to_string(tiny_config()).unwrap();
    let gpt2 = root.join("gpt2");
    train(root, &tiny, &data, &gpt2);
    // Every Llama setting transformers has a key for, away from its default.
    let llama_shape = "[model]\narch = \"llama\"\nn_kv_head = 1\ntie_embeddings = false\n\
                       intermediate_size = 40\nrope_theta = 500000.0\nnorm_eps = 1e-6\n";
    let llama = root.join("llama");
    train(root, &tiny.replace("[model]\n", llama_shape), &data, &llama);

    let mut folders = Vec::new();
    for ckpt in [&gpt2, &llama] {
        let out = root.join("hf").join(ckpt.file_name().unwrap());
        let r = lmloop(root, &["export", "--checkpoint", ckpt.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_eq!(r.0, 0, "export failed: {}", r.2);
        let header = safetensors_header(&out.join("model.safetensors"));
        assert_eq!(header["__metadata__"]["format"], "pt");
        folders.push(out);
    }
    // GPT-2's fused attention projection is stored as Conv1D does it: (in, out).
    let header = safetensors_header(&folders[0].join("model.safetensors"));
    assert_eq!(header["transformer.h.0.attn.c_attn.weight"]["shape"], serde_json::json!([32, 96]));

    let vocab = Vocab::load(&gpt2.join("tokenizer.json")).unwrap();
    let ids = vocab.encode(SAMPLE).unwrap();
    let ids = &ids[..ids.len().min(32)];
    let request = serde_json::json!({ "folders": folders, "text": SAMPLE, "ids": ids });
    let view: Value = serde_json::from_str(&run_python("transformers_view.py", &[], &request.to_string())).unwrap();
    let models = view["models"].as_array().unwrap();

    for (ckpt, seen) in [&gpt2, &llama].into_iter().zip(models) {
        let ours = Checkpoint::load(ckpt, Device::Cpu).unwrap();
        let cfg = ours.model.config();
        let difference = max_difference(&lmloop_logits(&ours.model, ids), &seen["logits"]);
        println!(
            "{}: max |logit difference| = {difference:.3e} over {} tokens (transformers {})",
            seen["class"],
            ids.len(),
            view["transformers"]
        );
        assert!(difference < LOGIT_TOLERANCE, "{}: logits differ by {difference}", seen["class"]);
        assert_eq!(seen["ids"], serde_json::json!(ours.vocab.encode(SAMPLE).unwrap()), "token ids differ");
        assert_eq!(seen["decoded"], SAMPLE, "decoding does not invert encoding");
        assert_eq!(seen["bos_token"], "<|endoftext|>");
        assert_eq!(seen["eos_token"], "<|endoftext|>");
        assert_eq!(seen["eos_token_id"], ours.vocab.eot());
        assert_eq!(seen["config"]["eos_token_id"], ours.vocab.eot());
        assert_eq!(seen["config"]["bos_token_id"], ours.vocab.eot());
        assert_eq!(seen["config"]["vocab_size"], cfg.vocab_size);
        assert_eq!(seen["tied"], cfg.tie_embeddings);
    }
    let (g, l) = (&models[0], &models[1]);
    assert_eq!(g["class"], "GPT2LMHeadModel");
    assert_eq!(g["uses_conv1d"], true);
    assert_eq!(g["config"]["n_positions"], 32);
    assert_eq!(g["config"]["activation_function"], "gelu_new");
    assert_eq!(g["config"]["n_inner"], 128);
    assert_eq!(l["class"], "LlamaForCausalLM");
    assert_eq!(l["config"]["max_position_embeddings"], 32);
    assert_eq!(l["config"]["num_key_value_heads"], 1);
    assert_eq!(l["config"]["intermediate_size"], 40);
    assert_eq!(l["config"]["rms_norm_eps"], 1e-6);
    assert_eq!(l["rope_theta"], 500000.0);
    assert_eq!(l["config"]["tie_word_embeddings"], false);
}

/// Writes a run config for the imported models: the tiny training settings, one pass.
fn run_config(root: &Path, corpus: &str) -> PathBuf {
    let text = format!(
        "[data]\ncorpus = \"{corpus}\"\n[model]\nblock_size = 32\n\
         [train]\nbatch_size = 16\nepochs = 1\nlearning_rate = 1e-3\nmin_learning_rate = 1e-4\nwarmup_steps = 2\neval_batches = 2\n\
         [sample]\nbatch_size = 16\n[runtime]\ndevice = \"cpu\"\nthreads = 1\n"
    );
    let path = root.join(format!("{corpus}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn transformers_models_seed_generation_zero_with_their_logits_and_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let text = write(&root.join("toy.txt"), &toy_corpus(120, 6));
    prepared(&root.join("corpora/real/toy"), 290);
    let hf = root.join("hf");
    run_python("random_models.py", &[&hf, &text, &root.join("corpora/real/toy/tokenizer.json")], "");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(hf.join("reference.json")).unwrap()).unwrap();

    // GPT-2 restarts every generation from the imported weights; Llama fine-tunes the chain.
    for (name, init, eot) in [("gpt2", "pretrained", "<|endoftext|>"), ("llama", "previous", "</s>")] {
        let folder = hf.join(name);
        let corpus = format!("toy-{name}");
        let out = root.join("corpora/real").join(&corpus);
        let r = lmloop(
            root,
            &[
                "prepare",
                "--input",
                text.to_str().unwrap(),
                "--tokenizer",
                folder.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(r.0, 0, "prepare --tokenizer failed: {}", r.2);
        let cfg = run_config(root, &corpus);
        let r = lmloop(
            root,
            &[
                "generations",
                "--config",
                cfg.to_str().unwrap(),
                "--init-from",
                &format!("hf/{name}"),
                "--init",
                init,
                "-n",
                "1",
                "--run",
                name,
            ],
        );
        assert_eq!(r.0, 0, "generations from {name} failed: {}", r.2);

        // The imported model computes what transformers computes.
        let pretrained =
            Checkpoint::load(&root.join("checkpoints").join(name).join("pretrained"), Device::Cpu).unwrap();
        let ids: Vec<u32> = serde_json::from_value(reference[name]["ids"].clone()).unwrap();
        let difference = max_difference(&lmloop_logits(&pretrained.model, &ids), &reference[name]["logits"]);
        println!("{name}: imported model's max |logit difference| = {difference:.3e}");
        assert!(difference < LOGIT_TOLERANCE, "{name}: logits differ by {difference}");

        // Generation 0 starts from it; generation 1 from generation 0 or from it again.
        let state = |k: &str| -> TrainingState {
            lmloop::durable::read_json(&root.join("checkpoints").join(name).join(k).join("state.json")).unwrap()
        };
        assert!(state("gen-00").init_from.unwrap().ends_with("pretrained"));
        let expected = if init == "previous" { "gen-00" } else { "pretrained" };
        assert!(state("gen-01").init_from.unwrap().ends_with(expected));

        // Every generation keeps the folder's tokenizer, and its documents end with its eos.
        let original = std::fs::read(folder.join("tokenizer.json")).unwrap();
        for k in ["gen-00", "gen-01"] {
            let ckpt = root.join("checkpoints").join(name).join(k);
            assert_eq!(
                std::fs::read(ckpt.join("tokenizer.json")).unwrap(),
                original,
                "{name} {k} changed the tokenizer"
            );
            let vocab = Vocab::load(&ckpt.join("tokenizer.json")).unwrap();
            assert_eq!(vocab.eot_text(), eot);
        }
        let folder_vocab = Vocab::load_file_or_folder(&folder).unwrap();
        // Documents start from the tokenizer's own BOS where it has one (Llama's <s>),
        // in training and in sampling alike.
        let d = folder_vocab.delimiters();
        let start = if name == "llama" { "<s>" } else { "<|endoftext|>" };
        assert_eq!(Some(d.start), folder_vocab.token_id(start), "{name} starts documents from {start}");
        assert_eq!(d.end, folder_vocab.eot());
        let m = lmloop::synthetic::manifest(&root.join("corpora/synthetic").join(name).join("gen-01")).unwrap();
        assert_eq!(m.start_id, Some(d.start), "{name}: the sampler started from {start}");
        let sample = std::fs::read(root.join("corpora/synthetic").join(name).join("gen-01.bin")).unwrap();
        assert!(!sample.is_empty());
        let meta = lmloop::prepare::CorpusMeta::load(&out).unwrap();
        assert_eq!(meta.eot_id, folder_vocab.eot());
        assert_eq!(meta.vocab_size, folder_vocab.vocab_size());
    }
}

#[test]
fn folders_lmloop_cannot_build_get_one_sentence_naming_what_it_can() {
    let project = tiny_project();
    let root = project.path();
    let cases: [(&str, Value, &str); 4] = [
        (
            "neox",
            serde_json::json!({"model_type": "gpt_neox", "architectures": ["GPTNeoXForCausalLM"]}),
            "lmloop does not implement; it imports GPT2LMHeadModel (model_type \"gpt2\") and LlamaForCausalLM (model_type \"llama\")",
        ),
        ("llama3", serde_json::json!({"model_type": "llama", "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0}}), "'llama3' RoPE scaling"),
        ("relu", serde_json::json!({"model_type": "gpt2", "activation_function": "relu"}), "activation_function 'relu'"),
        ("biased", serde_json::json!({"model_type": "llama", "attention_bias": true}), "attention_bias = true"),
    ];
    for (name, config, needle) in cases {
        let folder = root.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("config.json"), config.to_string()).unwrap();
        let r = lmloop(root, &["generations", "--config", "tiny.toml", "--init-from", name, "-n", "1", "--run", name]);
        assert_clear_error(&r, needle);
    }
    std::fs::create_dir_all(root.join("empty")).unwrap();
    let r = lmloop(root, &["generations", "--config", "tiny.toml", "--init-from", "empty", "-n", "1"]);
    assert_clear_error(&r, "is not a transformers model folder: it has no config.json");
    let r = lmloop(root, &["generations", "--config", "tiny.toml", "--init", "pretrained", "-n", "1"]);
    assert_clear_error(&r, "needs generations.init_from");
    // A GPT-2 folder without the tokenizers-library file.
    std::fs::write(root.join("relu/config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let r = lmloop(root, &["generations", "--config", "tiny.toml", "--init-from", "relu", "-n", "1"]);
    assert_clear_error(&r, "has no tokenizer.json");
    let r = lmloop(root, &["prepare", "--input", "tiny.toml", "--tokenizer", "relu", "--out", "corpora/real/x"]);
    assert_clear_error(&r, "has no tokenizer.json");
}

#[test]
fn a_corpus_tokenized_otherwise_is_refused_for_an_imported_model() {
    let project = tiny_project();
    let root = project.path();
    // A folder whose tokenizer is a different one from the toy corpus's: a GPT-2 over a
    // tokenizer trained on other text (no Python needed: the folder is written by lmloop).
    let other = root.join("other");
    let docs: Vec<String> = (0..60).map(|i| format!("entirely different words number {i} here")).collect();
    let vocab = Vocab::train(&docs, 280).unwrap();
    let cfg = ModelConfig { vocab_size: 280, ..ModelConfig::tiny(280) };
    save_untrained(&root.join("ckpt"), &cfg, &vocab);
    let r = lmloop(root, &["export", "--checkpoint", "ckpt", "--out", other.to_str().unwrap()]);
    assert_eq!(r.0, 0, "{}", r.2);
    let r = lmloop(root, &["generations", "--config", "tiny.toml", "--init-from", "other", "-n", "1"]);
    assert_clear_error(&r, "was tokenized with another tokenizer than");
}

/// An untrained checkpoint of shape `cfg` (enough to export; no training needed).
fn save_untrained(dir: &Path, cfg: &ModelConfig, vocab: &Vocab) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = Model::new(&vs.root(), cfg);
    let state = TrainingState::untrained("cpu", None);
    checkpoint::save(dir, &vs, cfg, vocab, &state, None).unwrap();
}

#[test]
fn export_refuses_an_occupied_folder_and_a_non_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join("corpus");
    prepared(&data, 300);
    let vocab = Vocab::load(&data.join("tokenizer.json")).unwrap();
    // A bias-free GPT-2: transformers' GPT-2 always has biases, so they are written as zeros.
    let cfg = ModelConfig { bias: false, ..ModelConfig::tiny(300) };
    save_untrained(&root.join("ckpt"), &cfg, &vocab);

    let r = lmloop(root, &["export", "--checkpoint", "nowhere", "--out", "hf"]);
    assert_clear_error(&r, "checkpoint folder nowhere does not exist");
    std::fs::create_dir_all(root.join("hf")).unwrap();
    std::fs::write(root.join("hf/notes.txt"), "mine").unwrap();
    let r = lmloop(root, &["export", "--checkpoint", "ckpt", "--out", "hf"]);
    assert_clear_error(&r, "already exists and is not empty");
    assert!(root.join("hf/notes.txt").exists(), "a refused export must leave the folder alone");
    let r = lmloop(root, &["export", "--checkpoint", "ckpt", "--out", "hf", "--force"]);
    assert_eq!(r.0, 0, "{}", r.2);
    assert!(!root.join("hf/notes.txt").exists());
    let header = safetensors_header(&root.join("hf/model.safetensors"));
    assert_eq!(header["transformer.h.1.mlp.c_fc.bias"]["shape"], serde_json::json!([128]));
    let names: Vec<String> =
        std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "a temporary folder was left behind: {names:?}");
}

/// Export, then import: the same model comes back, also from the layout of the original
/// GPT-2 files on the hub (no `transformer.` prefix, the causal-mask buffers `attn.bias`,
/// a tied copy of `lm_head.weight`). No Python needed.
#[test]
fn an_exported_model_imports_back_unchanged_in_either_gpt2_layout() {
    use lmloop::config::Arch;
    use lmloop::interop::HfFolder;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join("corpus");
    prepared(&data, 300);
    let vocab = Vocab::load(&data.join("tokenizer.json")).unwrap();
    let shapes = [
        ("gpt2", ModelConfig { bias: false, ..ModelConfig::tiny(300) }),
        (
            "llama",
            ModelConfig {
                arch: Arch::Llama,
                n_kv_head: Some(1),
                tie_embeddings: false,
                intermediate_size: Some(52),
                ..ModelConfig::tiny(300)
            },
        ),
    ];
    let ids: Vec<u32> = vocab.encode(SAMPLE).unwrap().into_iter().take(24).collect();
    for (name, cfg) in shapes {
        let ckpt = root.join(name);
        save_untrained(&ckpt, &cfg, &vocab);
        let original = Checkpoint::load(&ckpt, Device::Cpu).unwrap();
        // Give the untrained model non-trivial norms and biases, as training would.
        tch::no_grad(|| {
            for (_, mut v) in original.vs.variables() {
                let noise = Tensor::randn(v.size(), (tch::Kind::Float, Device::Cpu)) * 0.2;
                let _ = v.g_add_(&noise);
            }
        });
        // Saved as a checkpoint, so that its record describes the new weights.
        checkpoint::save(&ckpt, &original.vs, &cfg, &vocab, &original.state, None).unwrap();
        let original = Checkpoint::load(&ckpt, Device::Cpu).unwrap();
        let hf = root.join(format!("hf-{name}"));
        lmloop::interop::export(&ckpt, &hf, false).unwrap();
        let folder = HfFolder::open(&hf, 0.0).unwrap();
        let (_, back) = folder.load(None, Device::Cpu).unwrap();
        let expected = lmloop_logits(&original.model, &ids);
        let difference = (lmloop_logits(&back, &ids) - &expected).abs().max().double_value(&[]);
        assert!(difference < 1e-5, "{name}: round trip changed the logits by {difference}");

        if name == "gpt2" {
            // The hub's original GPT-2 layout.
            let mut tensors = Tensor::read_safetensors(hf.join("model.safetensors")).unwrap();
            let wte = tensors.iter().find(|(n, _)| n == "transformer.wte.weight").unwrap().1.copy();
            tensors = tensors.into_iter().map(|(n, t)| (n.trim_start_matches("transformer.").to_string(), t)).collect();
            for layer in 0..cfg.n_layer {
                tensors.push((
                    format!("h.{layer}.attn.bias"),
                    Tensor::ones([1, 1, 32, 32], (tch::Kind::Float, Device::Cpu)).tril(0),
                ));
            }
            tensors.push(("lm_head.weight".into(), wte));
            Tensor::write_safetensors(&tensors, hf.join("model.safetensors")).unwrap();
            let (_, hub) = HfFolder::open(&hf, 0.0).unwrap().load(None, Device::Cpu).unwrap();
            let difference = (lmloop_logits(&hub, &ids) - &expected).abs().max().double_value(&[]);
            assert!(difference < 1e-5, "the hub's GPT-2 layout changed the logits by {difference}");
        }
    }
}
