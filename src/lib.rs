//! `ngx_http_auth_cert_module`: X.509 client certificate authentication for nginx.
//!
//! The pure logic (certificate facts, identity, policy, settings, verdicts) knows nothing of
//! nginx and is unit-tested on its own. The nginx glue (module, configuration, phase handler,
//! TLS connection state, variables) is compiled only into the module, never into unit tests,
//! which cannot link against nginx's symbols.

pub mod age;
pub mod cert;
pub mod identity;
pub mod pem;
pub mod policy;
pub mod settings;
pub mod token;
pub mod trusted;
pub mod verdict;

#[cfg(not(test))]
mod conf;
#[cfg(not(test))]
mod forwarded;
#[cfg(not(test))]
mod handler;
#[cfg(not(test))]
mod login;
#[cfg(not(test))]
mod module;
#[cfg(not(test))]
mod reauth;
#[cfg(not(test))]
mod session;
#[cfg(not(test))]
mod tls;
#[cfg(not(test))]
mod variables;
