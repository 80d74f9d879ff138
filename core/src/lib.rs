//! The pure logic of `ngx_http_auth_cert_module`: everything the module decides, without nginx.
//!
//! The module crate reads nginx's and OpenSSL's state, hands it to this crate and writes the
//! answer back; every decision (which credential counts, whether the request passes, what a
//! rejection answers, what a token says) is made and unit-tested here.

#![forbid(unsafe_code)]

pub mod age;
pub mod cert;
pub mod decision;
pub mod directive;
pub mod forwarded;
pub mod identity;
pub mod metrics;
pub mod policy;
pub mod redirect;
pub mod revocation;
pub mod settings;
pub mod time;
pub mod token;
pub mod verdict;
pub mod zone;
