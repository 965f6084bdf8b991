//! The folder fuzzed programs run in. Its fixture files (text, an empty and
//! a corrupt file, safetensors, a CSV of runs, a saved SAE) give the readers
//! real input; every program starts from a fresh copy, so what one program
//! writes cannot change what the next one reads (program `i` of a seed does
//! the same in a batch and alone).
use rhai::Engine;
use std::io;
use std::path::{Path, PathBuf};

/// Made once per batch, with the engine that runs it.
const FIXTURES: &str = r#"
write_text("text.txt", "hello world\nsecond line\n");
write_text("empty.txt", "");
write_text("corrupt.bin", "\u0000\u00ffgarbage");
save_tensors("t.safetensors", #{a: randn([4, 3]), b: ones([2])});
write_csv("runs.csv", [#{l0: 1.0, mse: 0.5, tokens: 100}, #{l0: 2.0, mse: 0.25, tokens: 200}]);
sae(#{d_in: 4, n_features: 8}).save("sae_dir");
"#;

pub struct Sandbox {
    fixtures: PathBuf,
    work: PathBuf,
}

impl Sandbox {
    /// Makes `root/fixtures` with `engine` and returns the sandbox.
    pub fn create(root: &Path, engine: &Engine) -> io::Result<Sandbox> {
        let fixtures = root.join("fixtures");
        std::fs::create_dir_all(&fixtures)?;
        std::env::set_current_dir(&fixtures)?;
        engine
            .run(FIXTURES)
            .map_err(|e| io::Error::other(format!("making the fuzz fixtures: {e}")))?;
        Ok(Sandbox {
            fixtures,
            work: root.join("work"),
        })
    }

    /// The folder a program runs in: a fresh copy of the fixtures, made the
    /// current folder.
    pub fn fresh(&self) -> io::Result<&Path> {
        if self.work.exists() {
            std::fs::remove_dir_all(&self.work)?;
        }
        copy_dir(&self.fixtures, &self.work)?;
        std::env::set_current_dir(&self.work)?;
        Ok(&self.work)
    }
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
