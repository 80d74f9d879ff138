//! Certificate revocation lists (`auth_cert_crl`): the revoked certificates of one or more
//! CRLs, looked up on every request.
//!
//! The module crate verifies each CRL's signature with OpenSSL against the trusted CAs and
//! hands the DER of the CRL and of the CA that verified it to [`Crl::from_der`]. A revoked
//! entry is found by the issuer (the SHA-256 of the issuer name's DER encoding, and the key
//! identifier of the CA that verified the CRL, so that two CAs with the same name but different
//! keys do not share a CRL) and then by serial number, in a hash map: constant time whatever
//! the number of entries.

use core::fmt;
use std::collections::HashMap;

use sha2::{Digest, Sha256};
use x509_parser::asn1_rs::FromDer;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{CertificateRevocationList, X509Certificate};
use x509_parser::x509::X509Version;

use crate::cert::{rfc4514, serial_hex, CertificateInfo};

/// Largest CRL file read: a CRL with a million entries is about 40 MiB.
pub const MAX_FILE_LEN: usize = 64 << 20;

/// `reasonCode` `removeFromCRL` (RFC 5280 5.3.1): the entry lifts a hold, the certificate is
/// not revoked.
const REMOVE_FROM_CRL: u8 = 8;

/// Why a CRL file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlError(pub String);

impl fmt::Display for CrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CrlError {}

/// The DER of every `X509 CRL` PEM block of a file, in file order. Other PEM blocks are an
/// error (a certificate in place of a CRL is a mistake worth telling); a file without any CRL
/// too.
pub fn pem_crls(text: &[u8]) -> Result<Vec<Vec<u8>>, CrlError> {
    if text.len() > MAX_FILE_LEN {
        return Err(CrlError("file too large".into()));
    }
    let blocks = pem::parse_many(text).map_err(|e| CrlError(format!("invalid PEM: {e}")))?;
    if blocks.is_empty() {
        return Err(CrlError("no PEM \"X509 CRL\" block".into()));
    }
    blocks
        .into_iter()
        .map(|b| match b.tag() {
            "X509 CRL" => Ok(b.into_contents()),
            other => Err(CrlError(format!(
                "PEM block \"{other}\" where \"X509 CRL\" was expected"
            ))),
        })
        .collect()
}

/// One CRL, reduced to what the lookup needs.
#[derive(Debug, Clone)]
pub struct Crl {
    /// The issuer name, RFC 4514, for the log.
    pub issuer: String,
    /// SHA-256 of the issuer name's DER encoding.
    issuer_key: [u8; 32],
    /// The key identifier of the issuing CA: its subject key identifier, else the CRL's
    /// authority key identifier; `None` when neither is known.
    key_id: Option<Box<[u8]>>,
    /// thisUpdate and nextUpdate, Unix seconds.
    pub this_update: i64,
    pub next_update: Option<i64>,
    /// Revocation dates by serial number (upper-case hex, as [`CertificateInfo::serial`]).
    revoked: HashMap<Box<str>, i64>,
}

impl Crl {
    /// Reads a DER CRL whose signature verified with the key of `ca`, the DER certificate of
    /// the CA (`None` when it is not known yet, see [`Self::issued_by`]).
    pub fn from_der(der: &[u8], ca: Option<&[u8]>) -> Result<Self, CrlError> {
        let (rest, crl) = CertificateRevocationList::from_der(der)
            .map_err(|e| CrlError(format!("malformed CRL: {e}")))?;
        if !rest.is_empty() {
            return Err(CrlError("trailing data after CRL".into()));
        }
        if crl.version().is_some_and(|v| v != X509Version::V2) {
            return Err(CrlError("unsupported CRL version".into()));
        }
        let mut key_id = None;
        for ext in crl.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    key_id = aki.key_identifier.as_ref().map(|k| Box::from(k.0));
                }
                ParsedExtension::IssuingDistributionPoint(idp) if idp.indirect_crl => {
                    return Err(CrlError("indirect CRLs are not supported".into()));
                }
                // A delta CRL (deltaCRLIndicator) among them: it is always critical.
                ParsedExtension::UnsupportedExtension { .. } if ext.critical => {
                    return Err(CrlError(format!(
                        "unsupported critical CRL extension {}",
                        ext.oid.to_id_string()
                    )));
                }
                _ => {}
            }
        }
        let mut revoked = HashMap::new();
        for entry in crl.iter_revoked_certificates() {
            if entry
                .reason_code()
                .is_some_and(|(_, code)| code.0 == REMOVE_FROM_CRL)
            {
                continue;
            }
            revoked.insert(
                serial_hex(entry.raw_serial()).into_boxed_str(),
                entry.revocation_date.timestamp(),
            );
        }
        let mut crl = Crl {
            issuer: rfc4514(crl.issuer()),
            issuer_key: Sha256::digest(crl.issuer().as_raw()).into(),
            key_id,
            this_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|t| t.timestamp()),
            revoked,
        };
        if let Some(ca) = ca {
            crl.issued_by(ca)?;
        }
        Ok(crl)
    }

    /// Binds the CRL to the CA whose key verified its signature (its DER certificate): the
    /// CA's subject key identifier, when it has one, names the key of the certificates the CRL
    /// speaks for.
    pub fn issued_by(&mut self, ca: &[u8]) -> Result<(), CrlError> {
        let (_, ca) = X509Certificate::from_der(ca)
            .map_err(|e| CrlError(format!("malformed CA certificate: {e}")))?;
        for ext in ca.extensions() {
            if let ParsedExtension::SubjectKeyIdentifier(ski) = ext.parsed_extension() {
                self.key_id = Some(Box::from(ski.0));
            }
        }
        Ok(())
    }

    /// How many certificates it revokes.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// Whether this CRL speaks for the issuer of `cert`: same issuer name, and same key when
    /// both sides name one.
    fn covers(&self, cert: &CertificateInfo) -> bool {
        self.issuer_key == cert.issuer_key
            && match (&self.key_id, &cert.authority_key_id) {
                (Some(crl), Some(cert)) => crl == cert,
                _ => true,
            }
    }
}

/// A certificate found revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Unix seconds of the revocation date.
    pub date: i64,
}

impl Revocation {
    /// The log's description: serial and revocation date.
    pub fn describe(&self, cert: &CertificateInfo) -> String {
        format!(
            "serial {} revoked on {}",
            cert.serial(),
            utc_text(self.date)
        )
    }
}

/// The CRLs of one `auth_cert_crl` file.
#[derive(Debug, Clone, Default)]
pub struct RevocationList {
    crls: Vec<Crl>,
}

impl RevocationList {
    pub fn new(crls: Vec<Crl>) -> Self {
        RevocationList { crls }
    }

    pub fn crls(&self) -> &[Crl] {
        &self.crls
    }

    /// Whether `cert` is revoked by one of the CRLs of its issuer.
    pub fn check(&self, cert: &CertificateInfo) -> Option<Revocation> {
        self.crls
            .iter()
            .filter(|crl| crl.covers(cert))
            .find_map(|crl| crl.revoked.get(cert.serial()))
            .map(|&date| Revocation { date })
    }

    /// The CRLs past their nextUpdate at `now`.
    pub fn outdated(&self, now: i64) -> impl Iterator<Item = &Crl> {
        self.crls
            .iter()
            .filter(move |crl| crl.next_update.is_some_and(|next| next < now))
    }
}

/// Unix seconds as `YYYY-MM-DDThh:mm:ssZ`.
pub fn utc_text(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams,
        DnType, IsCa, Issuer, KeyIdMethod, KeyPair, RevocationReason, RevokedCertParams,
        SerialNumber,
    };

    pub(crate) struct Ca {
        issuer: Issuer<'static, KeyPair>,
        pub(crate) der: Vec<u8>,
    }

    pub(crate) fn ca(cn: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    pub(crate) fn leaf(ca: &Ca, serial: &[u8]) -> CertificateInfo {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "alice");
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        CertificateInfo::from_der(cert.der()).unwrap()
    }

    pub(crate) fn crl_der(
        ca: &Ca,
        serials: &[(&[u8], Option<RevocationReason>)],
        next: i64,
    ) -> Vec<u8> {
        let date = |t: i64| date_time_ymd(1970, 1, 1) + Duration::from_secs(t.unsigned_abs());
        let params = CertificateRevocationListParams {
            this_update: date(1_700_000_000),
            next_update: date(next),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|(serial, reason)| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: date(1_700_000_100),
                    reason_code: *reason,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&ca.issuer).unwrap().der().to_vec()
    }

    #[test]
    fn revoked_serials_of_the_issuer_are_found() {
        let ca = ca("Test CA");
        let der = crl_der(
            &ca,
            &[
                (&[0x10], None),
                (&[0x11], Some(RevocationReason::RemoveFromCrl)),
            ],
            1_800_000_000,
        );
        let crl = Crl::from_der(&der, Some(&ca.der)).unwrap();
        assert_eq!(crl.len(), 1);
        assert_eq!(crl.issuer, "CN=Test CA");
        assert_eq!(crl.next_update, Some(1_800_000_000));
        let list = RevocationList::new(vec![crl]);
        let revoked = leaf(&ca, &[0x10]);
        let found = list.check(&revoked).unwrap();
        assert_eq!(found.date, 1_700_000_100);
        assert_eq!(
            found.describe(&revoked),
            "serial 10 revoked on 2023-11-14T22:15:00Z"
        );
        assert_eq!(list.check(&leaf(&ca, &[0x11])), None);
        assert_eq!(list.check(&leaf(&ca, &[0x12])), None);
        assert_eq!(list.outdated(1_800_000_000).count(), 0);
        assert_eq!(list.outdated(1_800_000_001).count(), 1);
    }

    #[test]
    fn another_ca_with_the_same_name_is_not_covered() {
        let ca1 = ca("Same Name CA");
        let ca2 = ca("Same Name CA");
        let der = crl_der(&ca1, &[(&[0x10], None)], 1_800_000_000);
        let list = RevocationList::new(vec![Crl::from_der(&der, Some(&ca1.der)).unwrap()]);
        assert!(list.check(&leaf(&ca1, &[0x10])).is_some());
        assert_eq!(list.check(&leaf(&ca2, &[0x10])), None);
        let other = ca("Other CA");
        assert_eq!(list.check(&leaf(&other, &[0x10])), None);
    }

    #[test]
    fn pem_files_hold_crls_only() {
        let ca = ca("Test CA");
        let der = crl_der(&ca, &[(&[0x10], None)], 1_800_000_000);
        let block = |tag: &str, der: &[u8]| pem::encode(&pem::Pem::new(tag, der.to_vec()));
        let two = format!("{}{}", block("X509 CRL", &der), block("X509 CRL", &der));
        assert_eq!(pem_crls(two.as_bytes()).unwrap().len(), 2);
        assert!(pem_crls(b"").is_err());
        let err = pem_crls(block("CERTIFICATE", &ca.der).as_bytes()).unwrap_err();
        assert!(err.0.contains("CERTIFICATE"), "{err}");
        assert!(Crl::from_der(&der[..der.len() - 1], None).is_err());
        assert!(Crl::from_der(&ca.der, None).is_err());
    }

    #[test]
    fn utc_texts() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_text(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_text(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    /// 100,000 revoked serials: building is linear, a lookup constant time.
    #[test]
    fn a_hundred_thousand_revoked_serials() {
        let ca = ca("Big CA");
        let serials: Vec<[u8; 4]> = (0..100_000u32)
            .map(|i| (i + 0x0100_0000).to_be_bytes())
            .collect();
        let entries: Vec<(&[u8], Option<RevocationReason>)> =
            serials.iter().map(|s| (&s[..], None)).collect();
        let der = crl_der(&ca, &entries, 1_800_000_000);
        let started = Instant::now();
        let list = RevocationList::new(vec![Crl::from_der(&der, Some(&ca.der)).unwrap()]);
        let built = started.elapsed();
        assert_eq!(list.crls()[0].len(), 100_000);
        let revoked = leaf(&ca, &serials[54_321]);
        let good = leaf(&ca, &[0x7f, 0, 0, 1]);
        let started = Instant::now();
        let rounds = 100_000;
        let mut hits = 0;
        for _ in 0..rounds {
            hits += usize::from(list.check(&revoked).is_some());
            hits += usize::from(list.check(&good).is_some());
        }
        let per_lookup = started.elapsed() / (2 * rounds);
        assert_eq!(hits, rounds as usize);
        eprintln!("100,000 entries: built in {built:?}, {per_lookup:?} per lookup");
        // A hash lookup: far below a microsecond even in a debug build on a slow machine.
        assert!(per_lookup.as_micros() < 20, "{per_lookup:?} per lookup");
    }
}
