//! The `generation` files (`hsmbridge_contract::GENERATION_KEY`) of the credential Secret and
//! the provider ConfigMap: a decimal counter, read in at most a line's worth of bytes.

use std::io::Read;
use std::path::Path;

/// The counter in `path`; `None` when there is no such file, 0 when it is not a number.
pub fn read(path: &Path) -> Option<i64> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(32).read_to_string(&mut text))
        .ok()?;
    Some(text.trim().parse().unwrap_or(0))
}
