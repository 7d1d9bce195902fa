//! The `lmloop` binary: parses the command line and hands it to the library.
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};
use lmloop::cli::{self, Cli};

fn main() {
    // A bug or a libtorch failure must still end in one line, not a backtrace.
    lmloop::torch_error::install_panic_hook();
    let version: &'static str = Box::leak(cli::version().into_boxed_str());
    let parsed = Cli::command()
        .version(version)
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
        .unwrap_or_else(|e| exit_on(e));
    if let Err(err) = cli::run(parsed) {
        let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}

/// An unknown choice (`--policy shuffle`) is one sentence naming the choices, as in a
/// config file; every other parse outcome (help, version, usage errors) is clap's.
fn exit_on(e: clap::Error) -> ! {
    if e.kind() == ErrorKind::InvalidValue {
        if let (
            Some(ContextValue::String(arg)),
            Some(ContextValue::String(value)),
            Some(ContextValue::Strings(valid)),
        ) = (e.get(ContextKind::InvalidArg), e.get(ContextKind::InvalidValue), e.get(ContextKind::ValidValue))
        {
            // `arg` reads `--policy <POLICY>`: the flag, then what its value is.
            let (flag, what) = arg.split_once(' ').unwrap_or((arg.as_str(), arg.as_str()));
            let what = what.trim_matches(|c| c == '<' || c == '>').to_lowercase().replace('_', " ");
            eprintln!("error: unknown {what} '{value}' for {flag}: expected one of {}", valid.join(", "));
            std::process::exit(2);
        }
    }
    e.exit()
}
