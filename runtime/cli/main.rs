//! The `saelab` binary: a REPL by default, `run` for scripts, `notebook`
//! for reports, `kernel` for Jupyter.
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod fuzz;
mod job;
mod kernel;
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
    /// Execute a notebook (.rhai with `// %%` cells, or .ipynb) and write an HTML report (and Markdown beside it),
    /// or convert it with --to ipynb / --to rhai.
    Notebook {
        /// The notebook to execute or convert (.rhai percent format or .ipynb).
        file: PathBuf,
        /// Where to write the report or converted notebook (default: NOTEBOOK.html, .ipynb or .rhai in the current folder).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Define a variable for the notebook, e.g. --set steps=200.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// html runs the notebook into a report; ipynb and rhai convert it without running it.
        #[arg(long, value_enum, default_value = "html")]
        to: notebook::Format,
    },
    /// Watch, resubmit and collect a sweep or split harvest run by an executor (Slurm, a local pool).
    #[command(visible_alias = "sweep")]
    Job {
        #[command(subcommand)]
        action: job::JobAction,
    },
    /// Run saelab as a Jupyter kernel; `saelab kernel install` registers it with Jupyter first.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Jupyter starts the kernel itself (`saelab kernel --connection-file FILE`) once it is \
                      installed: `saelab kernel install`, then pick \"saelab (Rhai)\" in JupyterLab, Notebook or VS Code."
    )]
    Kernel {
        /// The connection file Jupyter hands a kernel it starts.
        #[arg(long, value_name = "FILE")]
        connection_file: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<KernelAction>,
    },
    /// Fuzz the script surface with generated programs (`make fuzz`; issue 14).
    #[command(hide = true)]
    Fuzz(fuzz::FuzzArgs),
}

#[derive(Subcommand)]
enum KernelAction {
    /// Write the kernelspec (kernels/saelab: kernel.json and logos) where Jupyter finds it.
    Install {
        /// In the user's Jupyter data folder ($JUPYTER_DATA_DIR or ~/.local/share/jupyter); the default.
        #[arg(long, conflicts_with_all = ["sys_prefix", "prefix"])]
        user: bool,
        /// In the active Python environment's share/jupyter (virtualenv, conda, or python3's sys.prefix).
        #[arg(long, conflicts_with = "prefix")]
        sys_prefix: bool,
        /// Under PREFIX/share/jupyter.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<PathBuf>,
        /// How Jupyter interrupts a running cell: an interrupt_request message, or SIGINT.
        #[arg(long, default_value = "message", value_parser = ["message", "signal"])]
        interrupt_mode: String,
    },
}

fn main() -> ExitCode {
    openmp::ensure_passive_wait_policy();
    let cli = Cli::parse();
    saelab::core::interrupt::install_handler();
    saelab::core::scalar_op::install_panic_hook();
    match cli.command {
        None => repl::run_repl(),
        Some(Command::Run { file, set }) => run::run_script(&file, &set),
        Some(Command::Notebook {
            file,
            output,
            set,
            to,
        }) => notebook::run_notebook(&file, output, &set, to),
        Some(Command::Kernel {
            connection_file,
            action,
        }) => run_kernel_command(connection_file, action),
        Some(Command::Job { action }) => job::run_job_command(action),
        Some(Command::Fuzz(args)) => fuzz::run_fuzz(&args),
    }
}

fn run_kernel_command(connection_file: Option<PathBuf>, action: Option<KernelAction>) -> ExitCode {
    match (connection_file, action) {
        (Some(file), None) => kernel::run_kernel(&file),
        (
            None,
            Some(KernelAction::Install {
                user: _,
                sys_prefix,
                prefix,
                interrupt_mode,
            }),
        ) => {
            let location = match (sys_prefix, prefix) {
                (true, _) => kernel::install::Location::SysPrefix,
                (false, Some(prefix)) => kernel::install::Location::Prefix(prefix),
                (false, None) => kernel::install::Location::User,
            };
            let options = kernel::InstallOptions {
                location,
                interrupt_mode,
            };
            match kernel::install(&options) {
                Ok(dir) => {
                    println!("installed the saelab kernel in {}", dir.display());
                    ExitCode::SUCCESS
                }
                Err(message) => {
                    eprintln!("saelab kernel install: {message}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!("saelab kernel: give --connection-file FILE (Jupyter does) or `install`");
            ExitCode::from(2)
        }
    }
}
