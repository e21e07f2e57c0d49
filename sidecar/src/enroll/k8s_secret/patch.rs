//! The body of the merge patches the Job sends: the credential, its generation and the error
//! annotations; secret bytes are base64-encoded straight into the body and never shown.

use std::collections::BTreeMap;
use std::fmt;

use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use hsmbridge_contract::GENERATION_KEY;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::enroll::redact;
use crate::enroll::{Credential, Reason};

use super::*;

/// The body of a JSON merge patch (RFC 7386): `null` removes a key.
#[derive(Debug, Serialize)]
pub struct SecretPatch<'a> {
    metadata: MetadataPatch<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<DataPatch<'a>>,
}

#[derive(Debug, Serialize)]
struct MetadataPatch<'a> {
    /// [`ANNOTATION_ERROR`] and [`ANNOTATION_MESSAGE`]; `None` is `null` (remove).
    annotations: BTreeMap<&'static str, Option<&'a str>>,
}

impl<'a> MetadataPatch<'a> {
    fn annotations(error: Option<&'a str>, message: Option<&'a str>) -> Self {
        MetadataPatch {
            annotations: BTreeMap::from([(ANNOTATION_ERROR, error), (ANNOTATION_MESSAGE, message)]),
        }
    }
}

/// Keys: [`KEY_PIN`], [`KEY_SECRETS_CFG`] (when given), [`GENERATION_KEY`].
#[derive(Debug)]
struct DataPatch<'a> {
    pin: Base64<'a>,
    secrets_cfg: Option<Base64<'a>>,
    /// The decimal generation (not a secret).
    generation: String,
}

impl Serialize for DataPatch<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(KEY_PIN, &self.pin)?;
        if let Some(cfg) = &self.secrets_cfg {
            map.serialize_entry(KEY_SECRETS_CFG, cfg)?;
        }
        map.serialize_entry(GENERATION_KEY, &Base64(self.generation.as_bytes()))?;
        map.end()
    }
}

impl<'a> SecretPatch<'a> {
    /// The credential, and `generation` (the previous one + 1).
    pub fn enrolled(credential: &'a Credential, generation: u64) -> Self {
        SecretPatch {
            metadata: MetadataPatch::annotations(None, None),
            data: Some(DataPatch {
                pin: Base64(&credential.pin),
                secrets_cfg: credential.secrets_cfg.as_ref().map(|c| Base64(c)),
                generation: generation.to_string(),
            }),
        }
    }

    pub fn failed(reason: Reason, message: &'a str) -> Self {
        SecretPatch {
            metadata: MetadataPatch::annotations(Some(reason.as_str()), Some(message)),
            data: None,
        }
    }
}

/// Secret bytes, base64-encoded straight into the request body (no
/// intermediate string to wipe); its Debug shows nothing.
struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&Base64Display::new(self.0, &STANDARD))
    }
}

impl fmt::Debug for Base64<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(redact::MARK)
    }
}
