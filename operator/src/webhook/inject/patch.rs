//! The JSONPatch encoding: `add` operations only (the patch never replaces what the user wrote),
//! appending to or prepending into arrays that may not exist yet.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde::Serialize;
use serde_json::Value;

use super::denial::Denial;

/// JSONPatch `add` operations, in order.
#[derive(Default)]
pub(super) struct Ops(Vec<PatchOperation>);

impl Ops {
    pub(super) fn add(&mut self, path: &[&str], value: &impl Serialize) -> Result<(), Denial> {
        let value = to_value(value)?;
        self.0.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(path.iter().copied()),
            value,
        }));
        Ok(())
    }

    /// Appends `items` to the array at `path` (creating it when `exists` is false).
    pub(super) fn append<T: Serialize>(&mut self, path: &[&str], exists: bool, items: &[T]) -> Result<(), Denial> {
        if !exists {
            return self.add(path, &items);
        }
        for item in items {
            self.add(&[path, &["-"]].concat(), item)?;
        }
        Ok(())
    }

    /// Puts `items` first in the array at `path`, in order.
    pub(super) fn prepend<T: Serialize>(&mut self, path: &[&str], exists: bool, items: &[T]) -> Result<(), Denial> {
        if !exists {
            return self.add(path, &items);
        }
        for (i, item) in items.iter().enumerate() {
            let index = i.to_string();
            self.add(&[path, &[index.as_str()]].concat(), item)?;
        }
        Ok(())
    }

    pub(super) fn into_patch(self) -> Patch {
        Patch(self.0)
    }
}

fn to_value(value: &impl Serialize) -> Result<Value, Denial> {
    serde_json::to_value(value).map_err(|e| Denial::Internal(e.to_string()))
}
