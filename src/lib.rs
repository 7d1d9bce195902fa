//! lmloop: recursive pretraining of small language models on their own samples.
//!
//! The library holds all logic; `src/main.rs` only parses the command line.
pub mod analysis;
pub mod bench;
pub mod checkpoint;
pub mod choice;
pub mod cli;
pub mod config;
pub mod corpus;
pub mod device;
pub mod durable;
pub mod eval;
pub mod generations;
pub mod host;
pub mod integrity;
pub mod interop;
pub mod layout;
pub mod mix;
pub mod model;
pub mod optim;
pub mod plot;
pub mod policy;
pub mod prepare;
pub mod progress;
pub mod records;
pub mod sample;
pub mod snapshot;
pub mod stream;
pub mod sweep;
pub mod synthetic;
pub mod theory;
pub mod tokenizer;
pub mod tokens;
pub mod torch_error;
pub mod train;
pub mod vecmath;
pub mod verify;
