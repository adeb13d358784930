//! Field-level validation errors: what a client is told in a 422.

use std::collections::BTreeMap;

/// Field name → what is wrong with it, as answered to the client in a 422.
pub type FieldErrors = BTreeMap<String, String>;
