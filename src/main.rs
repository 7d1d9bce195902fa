//! The `lmloop` binary: parses the command line and hands it to the library.
use clap::{CommandFactory, FromArgMatches};
use lmloop::cli::{self, Cli};

fn main() {
    // A bug or a libtorch failure must still end in one line, not a backtrace.
    lmloop::torch_error::install_panic_hook();
    let version: &'static str = Box::leak(cli::version().into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    let parsed = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let Err(err) = cli::run(parsed) {
        let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}
