//! The `saelab` binary: a REPL by default, `run` for scripts, `notebook`
//! for reports.
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod notebook;
mod openmp;
mod repl;
mod run;

#[derive(Parser)]
#[command(
    name = "saelab",
    version,
    about = "Rhai scripting over libtorch for interpretability research: tensors, models, sparse autoencoders, scaling laws, plots.",
    long_about = "With no command, saelab starts an interactive REPL (`:help` lists every function)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a .rhai script; errors print as FILE:LINE:COL: message.
    Run {
        /// The script to run.
        file: PathBuf,
        /// Define a variable for the script, e.g. --set steps=200 (numbers, true/false, or text).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Execute a notebook (.rhai with `// %%` cells) and write an HTML report (and Markdown beside it).
    Notebook {
        /// The notebook to execute.
        file: PathBuf,
        /// Where to write the HTML report (default: NOTEBOOK.html in the current folder).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Define a variable for the notebook, e.g. --set steps=200.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
}

fn main() -> ExitCode {
    openmp::ensure_passive_wait_policy();
    let cli = Cli::parse();
    saelab::core::interrupt::install_handler();
    match cli.command {
        None => repl::run_repl(),
        Some(Command::Run { file, set }) => run::run_script(&file, &set),
        Some(Command::Notebook { file, output, set }) => {
            notebook::run_notebook(&file, output, &set)
        }
    }
}
