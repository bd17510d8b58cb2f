//! Where inputs live: the committed seed corpus (`fuzz/corpus/<target>/`, one input a file) and
//! the inputs that broke a target (`target/fuzz-crashes/<target>/<hash>`).

use std::io;
use std::path::{Path, PathBuf};

use crate::rng::hash_bytes;

/// The seed corpus, in the source tree.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Where crashing inputs are written: `fuzz-crashes` in Cargo's target directory.
pub fn crash_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    target.join("fuzz-crashes")
}

/// The seeds of `target`, by file name (an empty list when it has none).
pub fn seeds(target: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
    let dir = corpus_dir().join(target);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut seeds = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            let name =
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            seeds.push((name, std::fs::read(&path)?));
        }
    }
    seeds.sort();
    Ok(seeds)
}

/// Writes an input that broke `target` under `dir`, named by its hash; returns its path.
pub fn save(dir: &Path, target: &str, input: &[u8]) -> io::Result<PathBuf> {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{:016x}", hash_bytes(input)));
    std::fs::write(&path, input)?;
    Ok(path)
}

/// The start of an input as printable text, for a log.
pub fn preview(input: &[u8], limit: usize) -> String {
    let shown = input.get(..limit).unwrap_or(input);
    let more = if shown.len() < input.len() {
        format!("… ({} bytes)", input.len())
    } else {
        String::new()
    };
    format!("{}{more}", shown.escape_ascii())
}
