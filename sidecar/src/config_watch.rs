//! Noticing that the provider configuration changed (`serve --watch-config DIR`, the provider
//! ConfigMap's mount): the kubelet swaps the files of a ConfigMap volume in place when the
//! ConfigMap changes. The directory's content (regular files not starting with `.`, at most
//! [`MAX_FILES`] of at most [`MAX_FILE_BYTES`] each) is fingerprinted on each check; a new
//! fingerprint counts once the next check sees it too (a swap read half-way is not a change).
//! The `generation` file in it (`hsmbridge_contract::GENERATION_KEY`) says which one it is.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const MAX_FILES: usize = 64;
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

pub struct ConfigWatch {
    dir: PathBuf,
    /// The fingerprint the module runs with.
    current: Option<u64>,
    /// A new fingerprint seen once.
    pending: Option<u64>,
    generation: i64,
}

impl ConfigWatch {
    pub fn new(dir: PathBuf) -> Self {
        let current = fingerprint(&dir);
        let generation = generation(&dir);
        ConfigWatch {
            dir,
            current,
            pending: None,
            generation,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The generation the module runs with.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// True when the content changed (and stayed so for two checks): the module should be
    /// re-initialized, then [`ConfigWatch::applied`] called.
    pub fn changed(&mut self) -> bool {
        let seen = fingerprint(&self.dir);
        if seen == self.current {
            self.pending = None;
            return false;
        }
        if seen.is_some() && self.pending == seen {
            return true;
        }
        self.pending = seen;
        false
    }

    /// The module now runs with what [`ConfigWatch::changed`] saw.
    pub fn applied(&mut self) {
        self.current = self.pending.take();
        self.generation = generation(&self.dir);
    }
}

/// A hash of the names and contents of the directory's files; `None` when it cannot be read
/// (then nothing is a change).
fn fingerprint(dir: &Path) -> Option<u64> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names.truncate(MAX_FILES);
    let mut hash = DefaultHasher::new();
    for name in names {
        let path = dir.join(&name);
        if !std::fs::metadata(&path).ok()?.is_file() {
            continue;
        }
        let mut content = Vec::new();
        std::fs::File::open(&path)
            .ok()?
            .take(MAX_FILE_BYTES)
            .read_to_end(&mut content)
            .ok()?;
        hash.write(name.as_bytes());
        hash.write_u8(0);
        hash.write(&content);
        hash.write_u8(0);
    }
    Some(hash.finish())
}

fn generation(dir: &Path) -> i64 {
    let mut text = String::new();
    match std::fs::File::open(dir.join(hsmbridge_contract::GENERATION_KEY))
        .and_then(|f| f.take(32).read_to_string(&mut text))
    {
        Ok(_) => text.trim().parse().unwrap_or(0),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_counts_once_two_checks_see_it_and_the_generation_follows() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("primus.cfg"), "hsms = {}").expect("write");
        std::fs::write(dir.path().join(hsmbridge_contract::GENERATION_KEY), "1").expect("write");
        let mut watch = ConfigWatch::new(dir.path().to_path_buf());
        assert_eq!(watch.generation(), 1);
        assert!(!watch.changed(), "nothing changed");
        std::fs::write(dir.path().join("primus.cfg"), "hsms = { hsm0 = {} }").expect("write");
        std::fs::write(dir.path().join(hsmbridge_contract::GENERATION_KEY), "2").expect("write");
        assert!(!watch.changed(), "seen once");
        assert!(watch.changed(), "seen twice");
        watch.applied();
        assert_eq!(watch.generation(), 2);
        assert!(!watch.changed(), "applied");
        std::fs::write(dir.path().join(".hidden"), "x").expect("write");
        assert!(!watch.changed() && !watch.changed(), "dot files are the kubelet's own");
    }

    #[test]
    fn a_change_back_before_the_second_check_is_not_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), "1").expect("write");
        let mut watch = ConfigWatch::new(dir.path().to_path_buf());
        std::fs::write(dir.path().join("a"), "2").expect("write");
        assert!(!watch.changed());
        std::fs::write(dir.path().join("a"), "1").expect("write");
        assert!(!watch.changed());
        assert!(!watch.changed());
    }
}
