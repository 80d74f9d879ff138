//! Unit tests of the token files, each token verified by jsonwebtoken independently.

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::cache::{CACHE_BYTES, CACHE_ENTRIES};
use super::key::b64;
use super::*;
use crate::cert::CertificateInfo;
use crate::cert::{CertificateBuilder, Field};
use crate::policy;
use crate::settings::tests::d;
use jsonwebtoken::{decode, decode_header, Algorithm as Alg, DecodingKey, Validation};
use std::process::Command;

/// Makes a key with the openssl command, as an administrator would.
fn openssl_key(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn genpkey(args: &[&str]) -> Vec<u8> {
    let mut all = vec!["genpkey"];
    all.extend_from_slice(args);
    openssl_key(&all)
}

fn ec() -> Vec<u8> {
    genpkey(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
}

fn cert_builder() -> CertificateBuilder {
    let mut b = CertificateBuilder::default();
    b.fingerprint([0x00, 0xff].repeat(16).try_into().unwrap())
        .validity(0, 4_000_000_000);
    b
}

fn cert() -> CertificateInfo {
    cert_builder().build()
}

fn with_fingerprint(fingerprint: [u8; 32]) -> Rc<CertificateInfo> {
    let mut b = CertificateBuilder::default();
    b.fingerprint(fingerprint);
    Rc::new(b.build())
}

fn jwk_value(settings: &TokenSettings, index: usize) -> Value {
    let doc: Value = serde_json::from_str(&settings.jwks_document()).unwrap();
    doc["keys"][index].clone()
}

fn decoding_key(jwk: &Value) -> DecodingKey {
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    DecodingKey::from_jwk(&jwk).unwrap()
}

fn verify(token: &str, key: &DecodingKey, alg: Alg) -> Map<String, Value> {
    let mut validation = Validation::new(alg);
    // Fixed test times lie in the past; expiry is checked by the .t tests.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    decode::<Map<String, Value>>(token, key, &validation)
        .unwrap()
        .claims
}

fn from_pem(pem: &[u8], kid: Option<&str>) -> Result<TokenKey, String> {
    TokenKey::from_pem(pem, kid, rustcrypto::load)
}

fn from_secret(secret: &[u8], kid: Option<&str>) -> Result<TokenKey, String> {
    TokenKey::from_secret(secret, kid, rustcrypto::load)
}

fn settings_with(key: TokenKey) -> TokenSettings {
    TokenSettings {
        keys: vec![Arc::new(key)],
        ..Default::default()
    }
}

fn sign_and_verify(pem: &[u8], alg: Alg, kty: &str) {
    let key = from_pem(pem, None).unwrap();
    assert_eq!(key.algorithm.name(), format!("{alg:?}"));
    let settings = settings_with(key);
    let jwk = jwk_value(&settings, 0);
    assert_eq!(jwk["kty"], kty);
    assert_eq!(jwk["alg"], format!("{alg:?}"));
    assert_eq!(jwk["use"], "sig");
    let key = settings.signing_key().unwrap();
    assert_eq!(jwk["kid"], key.thumbprint.as_str());

    let cert = cert();
    let subject = Subject {
        identity: "jdoe",
        cert: &cert,
        auth_time: Some(1_700_000_000),
    };
    let base = claims(&settings, &subject, &[]);
    let now = 1_800_000_000;
    let issued = issue(key, &base, now, 300, i64::MAX).unwrap();
    let header = decode_header(&issued.token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
    assert_eq!(header.alg, alg);
    let claims = verify(&issued.token, &decoding_key(&jwk), alg);
    assert_eq!(claims["sub"], "jdoe");
    assert_eq!(claims["exp"], now + 300);

    // The independent thumbprint of jsonwebtoken agrees with ours (RFC 7638).
    let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    assert_eq!(
        parsed.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256),
        key.thumbprint
    );
}

#[test]
fn es256_from_pkcs8_and_sec1() {
    sign_and_verify(&ec(), Alg::ES256, "EC");
    let sec1 = openssl_key(&["ecparam", "-genkey", "-name", "prime256v1"]);
    sign_and_verify(&sec1, Alg::ES256, "EC");
}

#[test]
fn eddsa_from_pkcs8() {
    sign_and_verify(&genpkey(&["-algorithm", "ED25519"]), Alg::EdDSA, "OKP");
}

#[test]
fn rs256_from_pkcs8_and_pkcs1() {
    let pem = genpkey(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    sign_and_verify(&pem, Alg::RS256, "RSA");
    let dir = std::env::temp_dir().join(format!("token-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rsa.key");
    std::fs::write(&file, &pem).unwrap();
    let pkcs1 = openssl_key(&["rsa", "-traditional", "-in", file.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(String::from_utf8_lossy(&pkcs1).contains("RSA PRIVATE KEY"));
    sign_and_verify(&pkcs1, Alg::RS256, "RSA");
}

#[test]
fn hs256_secret_is_never_published() {
    let secret = [7u8; 32];
    let settings = settings_with(from_secret(&secret, Some("s1")).unwrap());
    assert_eq!(settings.jwks_document(), r#"{"keys":[]}"#);
    assert!(settings.check().is_ok());
    let key = settings.signing_key().unwrap();
    let cert = cert();
    let subject = Subject {
        identity: "jdoe",
        cert: &cert,
        auth_time: None,
    };
    let issued = issue(key, &claims(&settings, &subject, &[]), 100, 60, i64::MAX).unwrap();
    let claims = verify(
        &issued.token,
        &DecodingKey::from_secret(&secret),
        Alg::HS256,
    );
    assert_eq!(claims["sub"], "jdoe");
    assert!(claims.get("auth_time").is_none());

    let jwks_only = TokenSettings {
        jwks: true,
        ..settings
    };
    assert_eq!(
        jwks_only.check().unwrap_err(),
        "\"auth_cert_jwks\" requires an \"auth_cert_token_key\" with a public key"
    );
}

#[test]
fn weak_and_unsupported_keys_are_refused() {
    let short = genpkey(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
    assert_eq!(
        from_pem(&short, None).unwrap_err(),
        "RSA key of 1024 bits is too weak, at least 2048 bits are needed"
    );
    let p384 = genpkey(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]);
    assert_eq!(
        from_pem(&p384, None).unwrap_err(),
        "unsupported key algorithm: EC curve P-384, expected P-256"
    );
    let ed448 = genpkey(&["-algorithm", "ED448"]);
    assert_eq!(
        from_pem(&ed448, None).unwrap_err(),
        "unsupported key algorithm: Ed448, expected P-256, Ed25519 or RSA"
    );
    assert_eq!(
        from_secret(b"short", None).unwrap_err(),
        "HMAC secret of 5 bytes is too short, at least 32 bytes are needed"
    );
    let err = from_pem(b"hello", None).unwrap_err();
    assert!(err.starts_with("expected exactly one"), "{err}");
    let cert_only = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let err = from_pem(cert_only, None).unwrap_err();
    assert!(err.starts_with("expected exactly one"), "{err}");
    let encrypted =
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert_eq!(
        from_pem(encrypted, None).unwrap_err(),
        "encrypted private keys are not supported"
    );
    let garbage = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let err = from_pem(garbage, None).unwrap_err();
    assert!(err.starts_with("not a valid PKCS #8 key"), "{err}");
}

#[test]
fn key_directive_reads_files_under_the_prefix() {
    let dir = std::env::temp_dir().join(format!("token-dir-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::write(dir.join("keys/ec.key"), ec()).unwrap();
    std::fs::write(dir.join("keys/secret"), [1u8; 40]).unwrap();
    std::fs::write(dir.join("keys/short"), [1u8; 8]).unwrap();

    let mut s = TokenSettings::default();
    s.apply(d("auth_cert_token_key"), &["keys/ec.key", "kid=one"], &dir)
        .unwrap();
    s.apply(
        d("auth_cert_token_key"),
        &["hmac:keys/secret", "kid=two"],
        &dir,
    )
    .unwrap();
    assert_eq!(s.signing_key().unwrap().kid, "one");
    assert_eq!(s.keys[1].algorithm, Algorithm::Hs256);

    let err = s
        .apply(d("auth_cert_token_key"), &["keys/ec.key", "kid=one"], &dir)
        .unwrap_err();
    assert_eq!(
        err,
        "duplicate kid \"one\" in \"auth_cert_token_key\" directive"
    );
    let err = s
        .apply(d("auth_cert_token_key"), &["keys/missing.key"], &dir)
        .unwrap_err();
    let missing = dir.join("keys/missing.key");
    assert!(
        err.starts_with(&format!("cannot read \"{}\": ", missing.display())),
        "{err}"
    );
    assert!(
        err.ends_with(" in \"auth_cert_token_key\" directive"),
        "{err}"
    );
    let err = s
        .apply(d("auth_cert_token_key"), &["hmac:keys/short"], &dir)
        .unwrap_err();
    assert_eq!(
        err,
        format!(
            "invalid key \"{}\": HMAC secret of 8 bytes is too short, at least 32 bytes \
             are needed in \"auth_cert_token_key\" directive",
            dir.join("keys/short").display()
        )
    );
    let err = s
        .apply(
            d("auth_cert_token_key"),
            &["keys/ec.key", "alg=ES512"],
            &dir,
        )
        .unwrap_err();
    assert_eq!(
        err,
        "invalid parameter \"alg=ES512\" in \"auth_cert_token_key\" directive"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn other_directives() {
    let p = Path::new("/");
    let mut s = TokenSettings::default();
    assert_eq!(s.ttl(), DEFAULT_TTL);
    s.apply(d("auth_cert_token_ttl"), &["1h30m"], p).unwrap();
    assert_eq!(s.ttl(), 5400);
    assert_eq!(
        s.apply(d("auth_cert_token_ttl"), &["1m"], p).unwrap_err(),
        "\"auth_cert_token_ttl\" directive is duplicate"
    );
    let mut t = TokenSettings::default();
    for bad in ["0", "5x", "m", "", "99999999999999999999"] {
        assert_eq!(
            t.apply(d("auth_cert_token_ttl"), &[bad], p).unwrap_err(),
            format!("invalid value \"{bad}\" in \"auth_cert_token_ttl\" directive")
        );
    }
    s.apply(d("auth_cert_token_audience"), &["a", "b"], p)
        .unwrap();
    s.apply(d("auth_cert_token_claim"), &["role", "$x"], p)
        .unwrap();
    assert_eq!(
        s.apply(d("auth_cert_token_claim"), &["role", "y"], p)
            .unwrap_err(),
        "duplicate claim \"role\" in \"auth_cert_token_claim\" directive"
    );
    assert_eq!(
        s.apply(d("auth_cert_token_claim"), &["exp", "1"], p)
            .unwrap_err(),
        "claim \"exp\" cannot be set in \"auth_cert_token_claim\" directive"
    );
    assert_eq!(
        s.apply(d("auth_cert_token_claim"), &["x"], p).unwrap_err(),
        "invalid number of arguments in \"auth_cert_token_claim\" directive"
    );
    assert_eq!(
        s.apply(d("auth_cert_jwks"), &["x"], p).unwrap_err(),
        "invalid number of arguments in \"auth_cert_jwks\" directive"
    );
    s.apply(d("auth_cert_login"), &[], p).unwrap();
    assert_eq!(s.login, Some(Login::Json));
    assert_eq!(
        s.check().unwrap_err(),
        "\"auth_cert_login\" requires \"auth_cert_token_key\""
    );
    assert_eq!(
        s.apply(d("auth_cert_jwks"), &[], p).unwrap_err(),
        "\"auth_cert_login\" and \"auth_cert_jwks\" exclude each other"
    );
    assert_eq!(
        s.apply(d("auth_cert_login"), &["json"], p).unwrap_err(),
        "\"auth_cert_login\" directive is duplicate"
    );

    let mut child = TokenSettings::default();
    child.merge(&s);
    assert_eq!(child.ttl(), 5400);
    assert_eq!(child.audience.as_deref().unwrap().len(), 2);
    assert_eq!(child.claims.as_ref().unwrap()[0].value, "$x");
    assert_eq!(child.login, None);
}

#[test]
fn login_modes() {
    assert_eq!(Login::parse(&[]).unwrap(), Login::Json);
    assert_eq!(Login::parse(&["json"]).unwrap(), Login::Json);
    assert_eq!(
        Login::parse(&["redirect=https://app.example/cb"]).unwrap(),
        Login::Redirect("https://app.example/cb".into())
    );
    assert!(Login::parse(&["redirect=https://a/#x"]).is_err());
    assert!(Login::parse(&["redirect="]).is_err());
    assert!(Login::parse(&["html"]).is_err());
}

#[test]
fn every_claim() {
    let mut settings = settings_with(from_pem(&ec(), Some("k1")).unwrap());
    settings.issuer = Some("https://login.example".into());
    settings.audience = Some(vec!["api".into()]);
    let cert = cert();
    let subject = Subject {
        identity: "jdoe",
        cert: &cert,
        auth_time: Some(1_700_000_000),
    };
    let extra = [("role", "admin".to_owned())];
    let base = claims(&settings, &subject, &extra);
    let key = settings.signing_key().unwrap();
    let issued = issue(key, &base, 1_700_000_010, 300, i64::MAX).unwrap();
    let c = verify(
        &issued.token,
        &decoding_key(&jwk_value(&settings, 0)),
        Alg::ES256,
    );
    assert_eq!(c["sub"], "jdoe");
    assert_eq!(c["iat"], 1_700_000_010);
    assert_eq!(c["nbf"], 1_700_000_010);
    assert_eq!(c["exp"], 1_700_000_310);
    assert_eq!(c["auth_time"], 1_700_000_000);
    assert_eq!(c["amr"], json!(["x509"]), "no evidence of a hardware key");
    assert_eq!(c["iss"], "https://login.example");
    assert_eq!(c["aud"], "api");
    assert_eq!(c["role"], "admin");
    assert_eq!(c["cnf"]["x5t#S256"], b64(&[0x00, 0xff].repeat(16)));
    assert_eq!(c["jti"].as_str().unwrap().len(), 22);

    settings.audience = Some(vec!["a".into(), "b".into()]);
    let mut smartcard = cert_builder();
    smartcard.add(Field::ExtendedKeyUsage, policy::OID_SMARTCARD_LOGON);
    let cert = smartcard.build();
    let subject = Subject {
        identity: "jdoe",
        cert: &cert,
        auth_time: None,
    };
    let base = claims(&settings, &subject, &[]);
    assert_eq!(base["aud"], json!(["a", "b"]));
    assert_eq!(base["amr"], json!(["sc", "hwk", "x509"]));
}

/// A certificate with these EKUs and policies.
fn cert_with(ekus: &[&str], policies: &[&str]) -> CertificateInfo {
    let mut b = cert_builder();
    for eku in ekus {
        b.add(Field::ExtendedKeyUsage, eku);
    }
    for policy in policies {
        b.add(Field::Policy, policy);
    }
    b.build()
}

#[test]
fn amr_from_evidence() {
    let p = Path::new("/");
    const HW: &str = "2.16.840.1.101.3.2.1.3.7";
    const CARD: &str = "1.3.6.1.4.1.55555.2";
    const CLIENT: &str = "1.3.6.1.5.5.7.3.2";
    let none = TokenSettings::default();
    let mut rules = TokenSettings::default();
    rules
        .apply(
            d("auth_cert_token_amr"),
            &["hwk", &format!("policy={HW}"), "policy=1.2.3"],
            p,
        )
        .unwrap();
    rules
        .apply(
            d("auth_cert_token_amr"),
            &["sc", &format!("policy={CARD}")],
            p,
        )
        .unwrap();
    let amr = |s: &TokenSettings, cert: &CertificateInfo| {
        let subject = Subject {
            identity: "jdoe",
            cert,
            auth_time: None,
        };
        claims(s, &subject, &[])["amr"].clone()
    };
    let x509 = json!(["x509"]);
    let hwk = json!(["hwk", "x509"]);
    let sc = json!(["sc", "hwk", "x509"]);
    let plain = cert_with(&[CLIENT], &[]);
    let cac = cert_with(&[CLIENT, policy::OID_SMARTCARD_LOGON], &[]);
    let piv = cert_with(&[policy::OID_PIV_CARD_AUTH], &[]);
    let hw = cert_with(&[CLIENT], &["2.5.29.32.0", HW]);
    let card = cert_with(&[], &[CARD]);
    let other = cert_with(&[], &["1.2.3.4"]);
    for (cert, without, with) in [
        (&plain, &x509, &x509),
        (&cac, &sc, &sc),
        (&piv, &sc, &sc),
        (&hw, &x509, &hwk),
        (&card, &x509, &sc),
        (&other, &x509, &x509),
    ] {
        assert_eq!(&amr(&none, cert), without);
        assert_eq!(&amr(&rules, cert), with);
    }
    assert!(has_card_eku(&cac) && has_card_eku(&piv) && !has_card_eku(&hw));

    // Inherited as a whole: a level with its own lines inherits none of the enclosing ones.
    let mut child = TokenSettings::default();
    child.merge(&rules);
    assert_eq!(amr(&child, &hw), hwk);
    let mut own = TokenSettings::default();
    own.apply(d("auth_cert_token_amr"), &["sc", "policy=1.2.3"], p)
        .unwrap();
    own.merge(&rules);
    assert_eq!(amr(&own, &hw), x509);
    assert_eq!(amr(&own, &cert_with(&[], &["1.2.3"])), sc);
}

#[test]
fn amr_directive_errors() {
    let p = Path::new("/");
    let mut s = TokenSettings::default();
    let mut err = |args: &[&str]| s.apply(d("auth_cert_token_amr"), args, p).unwrap_err();
    assert_eq!(
        err(&["pin", "policy=1.2.3"]),
        "invalid method \"pin\" in \"auth_cert_token_amr\" directive, it must be \"hwk\" or \"sc\""
    );
    assert_eq!(
        err(&["hwk", "1.2.3"]),
        "invalid parameter \"1.2.3\" in \"auth_cert_token_amr\" directive, it must be \"policy=OID\""
    );
    assert_eq!(
        err(&["hwk", "policy=anyPolicy"]),
        "invalid certificate policy OID \"anyPolicy\" in \"auth_cert_token_amr\" directive"
    );
    assert_eq!(
        err(&["hwk", "policy="]),
        "invalid certificate policy OID \"\" in \"auth_cert_token_amr\" directive"
    );
    for args in [&["hwk"][..], &[]] {
        assert_eq!(
            err(args),
            "invalid number of arguments in \"auth_cert_token_amr\" directive"
        );
    }
    s.apply(d("auth_cert_token_amr"), &["hwk", "policy=1.2.3"], p)
        .unwrap();
    assert_eq!(
        s.apply(d("auth_cert_token_amr"), &["hwk", "policy=1.2.4"], p)
            .unwrap_err(),
        "duplicate method \"hwk\" in \"auth_cert_token_amr\" directive"
    );
    s.apply(d("auth_cert_token_amr"), &["sc", "policy=1.2.4"], p)
        .unwrap();
    let rules = s.amr.as_deref().unwrap();
    assert_eq!(
        rules,
        [
            AmrRule {
                method: Method::Hwk,
                policies: vec!["1.2.3".into()]
            },
            AmrRule {
                method: Method::Sc,
                policies: vec!["1.2.4".into()]
            }
        ]
    );
}

#[test]
fn lifetime_is_bounded_by_the_limit() {
    let settings = settings_with(from_secret(&[3u8; 32], None).unwrap());
    let key = settings.signing_key().unwrap();
    let base = Map::new();
    let issued = issue(key, &base, 1000, 300, 1100).unwrap();
    assert_eq!(issued.expires_at, 1100);
    assert!(issue(key, &base, 1000, 300, 1000).is_err());
    let a = issue(key, &base, 1000, 300, i64::MAX).unwrap();
    let b = issue(key, &base, 1000, 300, i64::MAX).unwrap();
    assert_ne!(a.token, b.token, "jti differs");
}

/// A cache test: signs with an HMAC key, counting the signatures.
struct CacheRig {
    settings: TokenSettings,
    signed: core::cell::Cell<usize>,
}

impl CacheRig {
    fn new() -> Self {
        CacheRig {
            settings: settings_with(from_secret(&[3u8; 32], None).unwrap()),
            signed: core::cell::Cell::new(0),
        }
    }

    fn key(&self, identity: &str) -> CacheKey {
        let cert = with_fingerprint([0xab; 32]);
        CacheKey::new(
            &self.settings,
            identity.into(),
            &cert,
            None,
            i64::MAX,
            vec![],
        )
    }

    fn get(&self, cache: &mut TokenCache, now: i64, key: CacheKey) -> Issued {
        let signing_key = self.settings.signing_key().unwrap();
        cache
            .get_or_issue(key, now, || {
                self.signed.set(self.signed.get() + 1);
                issue(signing_key, &Map::new(), now, 300, i64::MAX)
            })
            .unwrap()
    }
}

#[test]
fn cache_reuses_until_half_the_lifetime() {
    let rig = CacheRig::new();
    let mut cache = TokenCache::default();
    let first = rig.get(&mut cache, 1000, rig.key("a"));
    assert_eq!(rig.get(&mut cache, 1149, rig.key("a")), first);
    let second = rig.get(&mut cache, 1150, rig.key("a"));
    assert_ne!(second, first);
    assert_eq!(second.issued_at, 1150);
    // Another identity gets its own token.
    let other = rig.get(&mut cache, 1151, rig.key("other"));
    assert_ne!(other, second);
    assert_eq!(rig.get(&mut cache, 1152, rig.key("a")), second);
    assert_eq!(rig.signed.get(), 3);
    assert_eq!(cache.len(), 2);
}

#[test]
fn cache_is_bounded_least_recently_used_first_out() {
    let rig = CacheRig::new();
    let mut cache = TokenCache::with_bounds(3, usize::MAX);
    let a = rig.get(&mut cache, 1000, rig.key("a"));
    rig.get(&mut cache, 1000, rig.key("b"));
    rig.get(&mut cache, 1000, rig.key("c"));
    // "a" is used again: "b" is now the least recently used.
    assert_eq!(rig.get(&mut cache, 1001, rig.key("a")), a);
    rig.get(&mut cache, 1002, rig.key("d"));
    assert_eq!(cache.len(), 3);
    assert_eq!(rig.signed.get(), 4);
    assert_eq!(rig.get(&mut cache, 1003, rig.key("a")), a, "a is kept");
    rig.get(&mut cache, 1003, rig.key("c"));
    assert_eq!(rig.signed.get(), 4, "c is kept");
    rig.get(&mut cache, 1003, rig.key("b"));
    assert_eq!(rig.signed.get(), 5, "b was dropped");

    // The default bound holds.
    let mut cache = TokenCache::default();
    for i in 0..CACHE_ENTRIES + 10 {
        rig.get(&mut cache, 1000, rig.key(&format!("k{i}")));
    }
    assert_eq!(cache.len(), CACHE_ENTRIES);
    assert!(cache.bytes() <= CACHE_BYTES);
}

#[test]
fn cache_table_stays_within_what_its_cost_counts() {
    // A full cache evicts one token per new one: the table's tombstones make it grow once
    // more (after about ten thousand insertions with 1,024 entries, to 4,096 buckets), then
    // never again. The cost of an entry counts four slots of the table: the slots must stay
    // small (boxes) for that to hold.
    let rig = CacheRig::new();
    let mut cache = TokenCache::default();
    for i in 0..20 * CACHE_ENTRIES {
        rig.get(&mut cache, 1000, rig.key(&format!("k{i}")));
    }
    assert_eq!(cache.len(), CACHE_ENTRIES);
    assert!(cache.bytes() <= CACHE_BYTES);
    assert!(
        cache.table_bytes() <= cache.table_bytes_counted(),
        "the table takes {} bytes, the costs count {}",
        cache.table_bytes(),
        cache.table_bytes_counted()
    );
}

#[test]
fn cache_drops_expired_tokens_before_reusable_ones() {
    let rig = CacheRig::new();
    let mut cache = TokenCache::with_bounds(2, usize::MAX);
    rig.get(&mut cache, 1000, rig.key("old"));
    let young = rig.get(&mut cache, 1100, rig.key("young"));
    // "old" is the least recently used and past half its lifetime at 1150.
    rig.get(&mut cache, 1150, rig.key("new"));
    assert_eq!(rig.get(&mut cache, 1151, rig.key("young")), young);
    assert_eq!(rig.signed.get(), 3);
}

#[test]
fn cache_is_bounded_in_bytes() {
    let rig = CacheRig::new();
    let mut probe = TokenCache::default();
    rig.get(&mut probe, 1000, rig.key("a"));
    let one = probe.bytes();
    assert!(one > 200 && one < 1024, "{one} bytes per entry");

    // Room for two entries of this size, not three.
    let mut cache = TokenCache::with_bounds(100, 2 * one + one / 2);
    rig.get(&mut cache, 1000, rig.key("a"));
    rig.get(&mut cache, 1000, rig.key("b"));
    rig.get(&mut cache, 1000, rig.key("c"));
    assert_eq!(cache.len(), 2);
    assert!(cache.bytes() <= 2 * one + one / 2);

    // A token larger than the whole cache is signed but not kept.
    let mut cache = TokenCache::with_bounds(100, one - 1);
    let a = rig.get(&mut cache, 1000, rig.key("a"));
    assert!(cache.is_empty());
    assert_ne!(rig.get(&mut cache, 1000, rig.key("a")), a);
}

#[test]
fn cache_key_covers_authentication_claims_and_limits() {
    let settings = settings_with(from_secret(&[3u8; 32], None).unwrap());
    let other_settings = settings_with(from_secret(&[4u8; 32], None).unwrap());
    let base = || {
        CacheKey::new(
            &settings,
            "a".into(),
            &with_fingerprint([0xf1; 32]),
            Some(5),
            9,
            vec!["x".into()],
        )
    };
    assert_eq!(base(), base());
    let mut k = base();
    k.extra = vec!["y".into()];
    assert_ne!(k, base());
    let mut k = base();
    k.limit = 8;
    assert_ne!(k, base());
    let mut k = base();
    k.auth_time = Some(6);
    assert_ne!(k, base());
    let mut k = base();
    k.fingerprint = [0xf2; 32];
    assert_ne!(k, base());
    let mut k = base();
    k.identity = "b".into();
    assert_ne!(k, base());
    let mut k = base();
    k.settings = other_settings.serial();
    assert_ne!(k, base());
}

#[test]
fn settings_serials_are_never_shared() {
    // A configuration's settings, then a later configuration's, perhaps at the same address:
    // a token cached for the first is never found for the second.
    let first = TokenSettings::default();
    let serial = first.serial();
    drop(first);
    let second = TokenSettings::default();
    assert_ne!(second.serial(), serial);
    // A clone may be changed afterwards: it is other settings.
    let clone = second.clone();
    assert_ne!(clone.serial(), second.serial());
    let rig = CacheRig::new();
    let cert = with_fingerprint([0xab; 32]);
    let key = |s: &TokenSettings| CacheKey::new(s, "a".into(), &cert, None, i64::MAX, vec![]);
    let mut cache = TokenCache::default();
    let a = rig.get(&mut cache, 1000, key(&second));
    assert_ne!(rig.get(&mut cache, 1000, key(&clone)), a);
    assert_eq!(rig.get(&mut cache, 1000, key(&second)), a);
}

/// A signer that lies about its key, as a broken [`LoadSigner`] could.
struct Liar(Algorithm, PublicKey);

impl Signer for Liar {
    fn algorithm(&self) -> Algorithm {
        self.0
    }

    fn public_key(&self) -> PublicKey {
        self.1.clone()
    }

    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, String> {
        Ok(vec![])
    }
}

#[test]
fn the_core_checks_what_the_signer_made() {
    fn wrong_algorithm(_: KeyMaterial<'_>) -> Result<Box<dyn Signer>, String> {
        Ok(Box::new(Liar(Algorithm::Rs256, PublicKey::None)))
    }
    fn short_coordinates(_: KeyMaterial<'_>) -> Result<Box<dyn Signer>, String> {
        let x = vec![1; 31];
        Ok(Box::new(Liar(
            Algorithm::Es256,
            PublicKey::Ec { x: x.clone(), y: x },
        )))
    }
    fn weak_rsa(material: KeyMaterial<'_>) -> Result<Box<dyn Signer>, String> {
        let KeyMaterial::Private { format, .. } = material else {
            return Err("a secret".into());
        };
        assert_eq!(format, KeyFormat::Pkcs8);
        // 2047 bits: a leading byte of 0x7f, then 255 bytes.
        let mut n = vec![0, 0x7f];
        n.extend([0xff; 255]);
        let e = vec![1, 0, 1];
        Ok(Box::new(Liar(Algorithm::Rs256, PublicKey::Rsa { n, e })))
    }
    let ec = ec();
    assert_eq!(
        TokenKey::from_pem(&ec, None, wrong_algorithm).unwrap_err(),
        "the signer made a RS256 key of a ES256 key"
    );
    assert!(TokenKey::from_pem(&ec, None, short_coordinates)
        .unwrap_err()
        .starts_with("invalid public key"));
    let rsa = genpkey(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    assert_eq!(
        TokenKey::from_pem(&rsa, None, weak_rsa).unwrap_err(),
        "RSA key of 2047 bits is too weak, at least 2048 bits are needed"
    );
    assert_eq!(
        TokenKey::from_secret(&[1; 32], None, wrong_algorithm).unwrap_err(),
        "the signer made no HMAC key of a secret"
    );
    // Without a signer, no key loads.
    let mut s = TokenSettings {
        signer: None,
        ..TokenSettings::default()
    };
    assert_eq!(
        s.apply(d("auth_cert_token_key"), &["any.key"], Path::new("/"))
            .unwrap_err(),
        "no token signer in \"auth_cert_token_key\" directive"
    );
}
