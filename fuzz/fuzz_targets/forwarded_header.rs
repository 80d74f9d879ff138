//! Forwarded certificate headers in every format (`auth_cert_header format=`), with or without
//! a chain header: the first byte picks the format and how the rest splits into the header
//! value and chain header lines (at each `\n`). Besides "no panic, no hang", checks the limits
//! on what a decoder returns, and that a certificate handed on as `$auth_cert_client_cert`
//! reads back as the same DER in format `rfc9440`.

#![no_main]

use libfuzzer_sys::fuzz_target;

use auth_cert_core::cert::CertificateInfo;
use auth_cert_core::forwarded::{rfc9440, Format, HeaderSource, MAX_CHAIN};

const FORMATS: [Format; 4] = [Format::Pem, Format::Rfc9440, Format::Xfcc, Format::Der64];

fn source(format: Format, chain: bool) -> HeaderSource {
    let mut args = vec!["X-Cert", "from=127.0.0.1", "ca=ca.pem"];
    let word = format!("format={}", format.as_str());
    args.push(&word);
    if chain {
        args.push("chain=X-Chain");
    }
    HeaderSource::parse(&args).expect("valid directive")
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let format = FORMATS[usize::from(selector & 3)];
    let chain_header = selector & 4 != 0 && format != Format::Xfcc;
    let mut lines = rest.split(|&b| b == b'\n');
    let value = lines.next().unwrap_or_default();
    let chain: Vec<Vec<u8>> = if chain_header {
        lines.map(<[u8]>::to_vec).collect()
    } else {
        Vec::new()
    };
    let source = source(format, chain_header);
    let Ok(certs) = source.decode(value, &chain) else {
        return;
    };
    assert!(!certs.is_empty() && certs.len() <= MAX_CHAIN);
    assert!(certs.iter().all(|der| !der.is_empty()));
    if let Ok(info) = CertificateInfo::from_der(&certs[0]) {
        assert_eq!(info.der(), certs[0].as_slice());
        let handed_on = rfc9440::encode(info.der());
        let back = Format::Rfc9440.decode(handed_on.as_bytes());
        assert_eq!(back, Ok(vec![certs[0].clone()]));
    }
});
