//! Directive arguments to settings: any words for any directive (but `auth_cert_token_key`,
//! which reads files), then merging levels. Besides "no panic, no hang", checks that every
//! refusal names its directive, as `nginx -t` must.

#![no_main]

use auth_cert_core::directive::Directive;
use auth_cert_core::settings::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let mut levels = [Settings::default(), Settings::default()];
    for (i, line) in text.lines().enumerate() {
        let mut words = line.split(' ');
        let Some(first) = words.next() else {
            continue;
        };
        let directive =
            Directive::ALL[usize::from(first.bytes().next().unwrap_or(0)) % Directive::ALL.len()];
        if directive == Directive::TokenKey {
            continue;
        }
        let args: Vec<&str> = words.collect();
        if let Err(message) = levels[i % 2].apply(directive, &args) {
            assert!(
                message.contains(directive.name())
                    || message.starts_with("\"auth_cert_login\" and \"auth_cert_jwks\""),
                "{message:?} does not name {}",
                directive.name()
            );
        }
    }
    let [parent, mut child] = levels;
    child.merge(&parent);
    let _ = (
        child.mode(),
        child.max_age(),
        child.stale(),
        child.token.check(),
    );
});
