//! The JWKS document of `auth_cert_jwks` (RFC 7517 section 5).

use serde_json::{json, Value};

use super::key::TokenKey;
use super::settings::TokenSettings;

impl TokenKey {
    /// This key's JWKS entry.
    fn jwk(&self) -> Option<Value> {
        let mut members = self.public.clone()?;
        members.insert("kid".into(), self.kid.clone().into());
        members.insert("alg".into(), self.algorithm.name().into());
        members.insert("use".into(), "sig".into());
        Some(Value::Object(members))
    }
}

impl TokenSettings {
    /// The JWKS document of the keys, in their configured order.
    pub fn jwks_document(&self) -> String {
        let keys: Vec<Value> = self.keys.iter().filter_map(|k| k.jwk()).collect();
        json!({ "keys": keys }).to_string()
    }
}
