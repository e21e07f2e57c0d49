//! Noticing that the provider configuration changed (`serve --watch-config DIR`, repeatable: the
//! provider ConfigMap's mount and the module's own ConfigMap volumes): the kubelet swaps the
//! files of a ConfigMap volume in place when the ConfigMap changes. The directories' content
//! (regular files not starting with `.`, at most [`MAX_FILES`] of at most [`MAX_FILE_BYTES`]
//! each per directory) is fingerprinted on each check; a new fingerprint counts once the next
//! check sees it too (a swap read half-way is not a change). The first `generation` file among
//! them (`hsmbridge_contract::GENERATION_KEY`, the provider ConfigMap's) says which one it is.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const MAX_FILES: usize = 64;
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

pub struct ConfigWatch {
    dirs: Vec<PathBuf>,
    /// The fingerprint the module runs with.
    current: Option<u64>,
    /// A new fingerprint seen once.
    pending: Option<u64>,
    generation: i64,
}

impl ConfigWatch {
    /// Watches `dirs`; `None` when there is none.
    pub fn new(dirs: Vec<PathBuf>) -> Option<Self> {
        if dirs.is_empty() {
            return None;
        }
        let current = fingerprint(&dirs);
        let generation = generation(&dirs);
        Some(ConfigWatch {
            dirs,
            current,
            pending: None,
            generation,
        })
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The generation the module runs with.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// True when the content changed (and stayed so for two checks): the module should be
    /// re-initialized, then [`ConfigWatch::applied`] called.
    pub fn changed(&mut self) -> bool {
        let seen = fingerprint(&self.dirs);
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
        self.generation = generation(&self.dirs);
    }
}

/// A hash of the names and contents of the directories' files; `None` when one cannot be read
/// (then nothing is a change).
fn fingerprint(dirs: &[PathBuf]) -> Option<u64> {
    let mut hash = DefaultHasher::new();
    for dir in dirs {
        hash.write(dir.as_os_str().as_encoded_bytes());
        hash.write_u8(0);
        hash_dir(dir, &mut hash)?;
    }
    Some(hash.finish())
}

fn hash_dir(dir: &Path, hash: &mut DefaultHasher) -> Option<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names.truncate(MAX_FILES);
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
    Some(())
}

/// The first generation file's counter; 0 when there is none.
fn generation(dirs: &[PathBuf]) -> i64 {
    dirs.iter()
        .find_map(|dir| crate::generation_file::read(&dir.join(hsmbridge_contract::GENERATION_KEY)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_counts_once_two_checks_see_it_and_the_generation_follows() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("primus.cfg"), "hsms = {}").expect("write");
        std::fs::write(dir.path().join(hsmbridge_contract::GENERATION_KEY), "1").expect("write");
        let module = tempfile::tempdir().expect("tempdir");
        std::fs::write(module.path().join("softhsm2.conf"), "log.level = INFO").expect("write");
        let mut watch = ConfigWatch::new(vec![dir.path().to_path_buf(), module.path().to_path_buf()]).expect("dirs");
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
        std::fs::write(module.path().join("softhsm2.conf"), "log.level = ERROR").expect("write");
        assert!(
            !watch.changed() && watch.changed(),
            "the module's own configuration counts too"
        );
        watch.applied();
        assert_eq!(watch.generation(), 2, "no new generation file: the number stays");
    }

    #[test]
    fn a_change_back_before_the_second_check_is_not_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), "1").expect("write");
        let mut watch = ConfigWatch::new(vec![dir.path().to_path_buf()]).expect("dirs");
        std::fs::write(dir.path().join("a"), "2").expect("write");
        assert!(!watch.changed());
        std::fs::write(dir.path().join("a"), "1").expect("write");
        assert!(!watch.changed());
        assert!(!watch.changed());
    }
}
