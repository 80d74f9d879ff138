//! Certificate bytes to identity: a forwarded header value (URL-escaped or raw PEM) or DER,
//! through `CertificateInfo::from_der`, every identity source, the identity regex and the
//! policy. Besides "no panic, no hang", checks that nothing that reaches a variable, a header
//! or a log holds a control character.

#![no_main]

use libfuzzer_sys::fuzz_target;

use auth_cert_core::forwarded::{self as trusted, pem, MAX_CHAIN};
use auth_cert_core::{cert, policy};
use std::cell::RefCell;
use std::sync::OnceLock;

use auth_cert_core::cert::Field;
use auth_cert_core::identity::{self, IdentityRegex, IdentitySource};
use auth_cert_core::policy::Policy;

/// Every identity source, and an `oid:` one for serialNumber and one for emailAddress.
fn sources() -> &'static [IdentitySource] {
    static SOURCES: OnceLock<Vec<IdentitySource>> = OnceLock::new();
    SOURCES.get_or_init(|| {
        [
            "uid",
            "cn",
            "email",
            "upn",
            "san_dns",
            "san_uri",
            "serial",
            "fingerprint",
            "subject",
            "oid:2.5.4.5",
            "oid:1.2.840.113549.1.9.1",
        ]
        .iter()
        .map(|w| IdentitySource::parse(w).expect("valid source"))
        .collect()
    })
}

fn policies() -> &'static [Policy] {
    static POLICIES: OnceLock<Vec<Policy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let all = sources().to_vec();
        let smartcard = Policy {
            sources: Some(vec![IdentitySource::Cn]),
            identity_regex: Some(IdentityRegex::new(r"\.(?<id>\d{10})$").expect("regex")),
            eku: vec![
                "1.3.6.1.5.5.7.3.2".into(),
                policy::OID_SMARTCARD_LOGON.into(),
            ],
            key_usage: policy::parse_key_usage("digitalSignature").expect("bit"),
            policies: vec!["2.16.840.1.101.2.1.11.42".into()],
            issuer: Some(regex::Regex::new("^CN=").expect("regex")),
        };
        vec![
            Policy::default(),
            Policy {
                sources: Some(all),
                ..Default::default()
            },
            smartcard,
        ]
    })
}

thread_local! {
    /// Kept across inputs, as a worker keeps it across connections.
    static PARSED: RefCell<cert::ParsedCertificates> = RefCell::default();
}

fn check_printable(what: &str, value: &str) {
    assert!(
        !value.chars().any(char::is_control),
        "control character in {what}: {value:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let chain = match pem::decode_chain(data) {
        Ok(chain) => {
            assert!(!chain.is_empty() && chain.len() <= MAX_CHAIN);
            chain
        }
        Err(_) => vec![data.to_vec()],
    };
    for der in &chain {
        let shared = PARSED.with(|parsed| parsed.borrow_mut().get_or_parse(der));
        let Ok(info) = cert::CertificateInfo::from_der(der) else {
            assert!(
                shared.is_err(),
                "shared parse of an unparseable certificate"
            );
            continue;
        };
        // The parse shared between connections is the parse of these very bytes.
        assert_eq!(shared.as_deref(), Ok(&info));
        if let Ok(shared) = &shared {
            PARSED.with(|parsed| parsed.borrow_mut().keep(shared));
        }
        // Every text a variable ($auth_cert_*) or a log line shows.
        check_printable("subject", info.subject());
        check_printable("issuer", info.issuer());
        check_printable("serial", info.serial());
        check_printable("fingerprint", info.fingerprint_hex());
        assert_eq!(info.fingerprint_hex().len(), 64);
        check_printable("email", info.email().unwrap_or_default());
        check_printable("upn", info.upn().unwrap_or_default());
        check_printable("left out", &info.left_out().to_string());
        for field in Field::ALL {
            for value in info.values(field) {
                check_printable(field.name(), value);
            }
        }
        // Each identity source alone: a value with control characters is never an identity.
        for source in sources() {
            if let Ok(identity) = identity::resolve(core::slice::from_ref(source), None, &info) {
                check_printable(&source.to_string(), identity);
            }
        }
        for policy in policies() {
            for now in [info.not_before, info.not_after, 0] {
                if let Ok(identity) = policy.evaluate(&info, now) {
                    assert!(!identity.is_empty());
                    check_printable("identity", identity);
                }
            }
        }
    }
    let _ = trusted::ArgSource::identity(data).map(|id| check_printable("argument", &id));
});
