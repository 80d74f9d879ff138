//! The decisions of the access phase, from what nginx and OpenSSL established about a request:
//! which credential counts, whether the request passes, and what a rejection answers.
//!
//! The module crate gathers the facts (the connection's peer certificate, the authentication
//! time stamped into its TLS session, the forwarded credential of a trusted peer) and carries
//! out the [`Action`]; the rules live here, where unit tests reach them.

use core::cell::RefCell;
use core::ptr;
use std::rc::Rc;

use crate::age;
use crate::cert::CertificateInfo;
use crate::directive::Directive;
use crate::forwarded::Source;
use crate::policy::Policy;
use crate::revocation::RevocationList;
use crate::settings::{Mode, Settings, Stale};
use crate::verdict::{wire_status, Reason};

/// What a connection's TLS handshake established about the client certificate.
#[derive(Debug)]
pub enum PeerCertificate {
    /// The client sent none.
    Absent,
    /// Sent, but the chain did not verify (`ssl_verify_client optional_no_ca`). Its facts
    /// serve the log only, never a variable.
    Unverified(Option<Rc<CertificateInfo>>),
    /// Verified, but not parseable by this module.
    Unparseable,
    Verified(Verified),
}

/// A policy's decision on a certificate: the identity, or why it is refused.
pub type Decision = Result<Rc<str>, Reason>;

/// A verified certificate, with the last policy decision made on it.
#[derive(Debug)]
pub struct Verified {
    pub info: Rc<CertificateInfo>,
    /// The requests of a connection mostly meet the same location: its policy's decision is
    /// kept, by the address of the policy (configurations outlive their connections).
    decision: RefCell<Option<(*const Policy, Decision)>>,
}

impl Verified {
    pub fn new(info: Rc<CertificateInfo>) -> Self {
        Verified {
            info,
            decision: RefCell::new(None),
        }
    }

    /// `policy.judge` of this certificate, made once per connection and policy.
    pub fn judge(&self, policy: &Policy) -> Decision {
        if let Some((judged_by, decision)) = &*self.decision.borrow() {
            if ptr::eq(*judged_by, policy) {
                return decision.clone();
            }
        }
        let decision = policy.judge(&self.info).map(Rc::from);
        *self.decision.borrow_mut() = Some((policy, decision.clone()));
        decision
    }
}

/// What the request itself carries (`auth_cert_header`, `auth_cert_identity_arg`).
#[derive(Debug)]
pub enum Forwarded {
    /// Nothing forwarded, or nothing configured: the TLS certificate decides.
    Nothing,
    /// A forwarded certificate from a peer outside `from=`: ignored.
    Untrusted,
    /// A credential from a trusted peer, evaluated.
    Evaluated(Credential),
}

/// A forwarded credential of a trusted peer, evaluated.
#[derive(Debug)]
pub struct Credential {
    pub source: Source,
    /// The forwarded certificate, when it verified (or verified but for its validity).
    pub cert: Option<Rc<CertificateInfo>>,
    pub outcome: Result<String, Reason>,
    /// What exactly was wrong with a rejected credential, for the log.
    pub detail: Option<String>,
}

/// The TLS side of a request.
#[derive(Debug, Clone, Copy)]
pub enum Tls<'a> {
    /// A connection without TLS.
    Plain,
    Connection {
        /// The connection's client certificate; `None` when it could not be kept (memory).
        peer: Option<&'a PeerCertificate>,
        /// The time of the full handshake that verified the certificate, from the session.
        auth_time: Option<i64>,
        /// Whether the handshake ran in the SSL context of the server that serves the request,
        /// and so verified the certificate against this server's client CAs. Without SNI the
        /// handshake runs in the default server while `Host` may select another server.
        this_server: bool,
        /// Whether the request arrived in TLS 1.3 early data (0-RTT), before the client
        /// finished the handshake: anyone who captured the client's first flight can replay it.
        early_data: bool,
    },
}

/// The evaluation of one request: what the variables show and what the gate decides on.
#[derive(Debug)]
pub struct Evaluation {
    /// The certificate, verified or not; variables expose it only when `trusted`.
    pub cert: Option<Rc<CertificateInfo>>,
    pub trusted: bool,
    /// The identity, or why the request is not authenticated.
    pub outcome: Result<Rc<str>, Reason>,
    /// Where the evaluated credential came from; `None` when there was none.
    pub source: Option<Source>,
    /// Unix seconds of the full TLS handshake that verified the client certificate, whatever
    /// resumption or keep-alive happened since; `None` when unknown or untrusted.
    pub auth_time: Option<i64>,
    /// Seconds since `auth_time` when the request was evaluated.
    pub age: Option<i64>,
    /// What exactly was wrong, for the log line of a rejection.
    pub detail: Option<String>,
}

impl Evaluation {
    fn new(
        cert: Option<Rc<CertificateInfo>>,
        trusted: bool,
        outcome: Result<Rc<str>, Reason>,
        source: Option<Source>,
        detail: Option<String>,
    ) -> Self {
        Evaluation {
            cert,
            trusted,
            outcome,
            source,
            auth_time: None,
            age: None,
            detail,
        }
    }

    fn failed(reason: Reason) -> Self {
        Self::new(None, false, Err(reason), None, None)
    }

    /// The certificate's facts, when its chain verified.
    pub fn trusted_cert(&self) -> Option<&CertificateInfo> {
        self.cert.as_deref().filter(|_| self.trusted)
    }
}

/// Evaluates a request: a forwarded credential of a trusted peer first, else the TLS client
/// certificate, checked against the CRLs of `auth_cert_crl` (`crl`), the policy, its validity
/// at `now` and `auth_cert_max_age`. `forwarded` is `Err` when reading the request failed
/// (memory). A request in early data is authenticated by nothing: neither the resumed
/// session's certificate nor a forwarded credential, which a replay would carry as well.
pub fn evaluate(
    settings: &Settings,
    forwarded: Result<Forwarded, ()>,
    tls: Tls<'_>,
    crl: Option<&RevocationList>,
    now: i64,
) -> Evaluation {
    if let Tls::Connection {
        early_data: true, ..
    } = tls
    {
        return Evaluation::failed(Reason::EarlyData);
    }
    let revoked = |cert: &CertificateInfo| {
        crl.and_then(|crl| crl.check(cert))
            .map(|revocation| revocation.describe(cert))
    };
    let untrusted_header = match forwarded {
        Ok(Forwarded::Evaluated(c)) => {
            // A verified forwarded certificate: revoked overrides whatever the policy said.
            if let Some(detail) = c.cert.as_deref().and_then(revoked) {
                let outcome = Err(Reason::Revoked);
                return Evaluation::new(c.cert, true, outcome, Some(c.source), Some(detail));
            }
            let outcome = c.outcome.map(Rc::from);
            return Evaluation::new(c.cert, true, outcome, Some(c.source), c.detail);
        }
        Ok(Forwarded::Untrusted) => true,
        Ok(Forwarded::Nothing) => false,
        Err(()) => return Evaluation::failed(Reason::Internal),
    };
    let (peer, auth_time, this_server) = match tls {
        Tls::Connection {
            peer,
            auth_time,
            this_server,
            early_data: _,
        } => (peer, auth_time, this_server),
        Tls::Plain => (Some(&PeerCertificate::Absent), None, true),
    };
    let mut revocation = None;
    let (cert, trusted, outcome) = match peer {
        // Verified in the handshake of another server of the address (no SNI, or a session of
        // another server), against that server's client CAs: not this server's verification.
        Some(PeerCertificate::Verified(verified)) if !this_server => {
            let detail = "certificate verified for another server".to_owned();
            return Evaluation::new(
                Some(verified.info.clone()),
                false,
                Err(Reason::Verify),
                Some(Source::Tls),
                Some(detail),
            );
        }
        None => (None, false, Err(Reason::Internal)),
        Some(PeerCertificate::Absent) if untrusted_header => (None, false, Err(Reason::Network)),
        Some(PeerCertificate::Absent) => (None, false, Err(Reason::NoCert)),
        Some(PeerCertificate::Unverified(info)) => (info.clone(), false, Err(Reason::Verify)),
        Some(PeerCertificate::Unparseable) => (None, false, Err(Reason::Parse)),
        Some(PeerCertificate::Verified(verified)) => {
            revocation = revoked(&verified.info);
            let outcome = if revocation.is_some() {
                Err(Reason::Revoked)
            } else if verified.info.is_valid_at(now) {
                verified.judge(&settings.policy)
            } else {
                Err(Reason::Expired)
            };
            (Some(verified.info.clone()), true, outcome)
        }
    };
    let source = match peer {
        Some(PeerCertificate::Absent) | None => None,
        Some(_) => Some(Source::Tls),
    };
    // auth_cert_max_age holds for certificates verified in this nginx's TLS handshakes.
    let outcome = match (outcome, settings.max_age()) {
        (Ok(_), Some(max_age)) if age::is_stale(auth_time, now, max_age) => Err(Reason::Stale),
        (outcome, _) => outcome,
    };
    let detail = revocation
        .or_else(|| untrusted_header.then(|| "forwarded certificate header ignored".to_owned()));
    let mut evaluation = Evaluation::new(cert, trusted, outcome, source, detail);
    evaluation.auth_time = auth_time.filter(|_| trusted);
    evaluation.age = evaluation.auth_time.map(|t| age::age(t, now));
    evaluation
}

/// What the access phase does with an evaluated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Not this module's business (`auth_cert off` or `optional`): the next handler decides.
    Decline,
    /// Authenticated: the request passes this module.
    Allow,
    /// Stale under `auth_cert_stale reauth`: sent back to its own URL on a new connection.
    Reauthenticate,
    Reject(Reason),
}

/// The access phase's answer to `outcome` in a location with `settings`. `satisfy_all` is
/// nginx's `satisfy all`: under `satisfy any` a stale request is a plain rejection that another
/// access module may overrule, never a redirect.
pub fn action(settings: &Settings, outcome: &Result<Rc<str>, Reason>, satisfy_all: bool) -> Action {
    if settings.mode() != Mode::On {
        return Action::Decline;
    }
    match outcome {
        Ok(_) => Action::Allow,
        Err(Reason::Stale) if settings.stale() == Stale::Reauth && satisfy_all => {
            Action::Reauthenticate
        }
        Err(reason) => Action::Reject(*reason),
    }
}

/// Whether a location with `settings` can answer a request with [`Action::Reauthenticate`]
/// (under nginx's `satisfy all` when `satisfy_all`): exactly when some outcome makes [`action`]
/// re-authenticate, which a stale certificate only is where `auth_cert_max_age` is set.
pub fn may_reauthenticate(settings: &Settings, satisfy_all: bool) -> bool {
    settings.max_age().is_some()
        && action(settings, &Err(Reason::Stale), satisfy_all) == Action::Reauthenticate
}

/// `nginx -t`'s check of a location whose server listens with `quic` (HTTP/3); `origin` is
/// where its `auth_cert` (or `auth_cert_login`) is written, as `"directive" in file:line`.
///
/// The re-authentication redirect only works when the connection ends after it, and nginx
/// ends no HTTP/3 connection for a request (it does for HTTP/1.x and, with GOAWAY, HTTP/2):
/// the client would come back on the same connection, with the same stale session, and be
/// redirected again without end. Such a location is refused; a server with both TCP and QUIC
/// listeners serves HTTP/3 with the same locations, so it is refused too.
pub fn check_http3(settings: &Settings, satisfy_all: bool, origin: &str) -> Result<(), String> {
    if !may_reauthenticate(settings, satisfy_all) {
        return Ok(());
    }
    Err(format!(
        "\"{stale} reauth\" (the default) cannot re-authenticate over HTTP/3: the location \
         of {origin} has \"{max_age}\" and its server listens with \"quic\"; use \
         \"{stale} reject\" there, or remove \"{max_age}\"",
        stale = Directive::Stale.name(),
        max_age = Directive::MaxAge.name(),
    ))
}

/// `nginx -t`'s check of a logout location (`location` is its name) whose server listens with
/// `quic`: a logout ends the authentication by closing the connection it was asked on (see
/// [`check_http3`]: nginx ends no HTTP/3 connection for a request), so over HTTP/3 the client
/// could go on sending requests on it, authenticated as before. Refused.
pub fn check_http3_logout(settings: &Settings, location: &str) -> Result<(), String> {
    if settings.logout.is_none() {
        return Ok(());
    }
    Err(format!(
        "\"{logout}\" cannot end an HTTP/3 connection: the location \"{location}\" has \
         \"{logout}\" and its server listens with \"quic\"; serve the logout from a server \
         without \"quic\"",
        logout = Directive::Logout.name(),
    ))
}

/// Whether the access phase writes a line of its own for `outcome` (the rejection, or the
/// re-authentication): exactly when [`action`] rejects or re-authenticates. That line then
/// tells what was left out of the certificate; any other request tells it on a line of its
/// own, once ([`CertificateInfo::left_out_once`]).
pub fn gate_logs(settings: &Settings, outcome: &Result<Rc<str>, Reason>) -> bool {
    settings.mode() == Mode::On && outcome.is_err()
}

/// How a rejected request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The code handed to nginx (495 and 496 keep nginx's meaning, sent as 400).
    pub code: u16,
    /// The body the module sends itself, with status [`wire_status`] of `code`; `None` when the
    /// code goes to nginx (an `error_page` for it, or `satisfy any`).
    pub body: Option<String>,
    /// No certificate can arrive on this connection any more: it is closed after the answer,
    /// so that the client's next request makes a new handshake.
    pub close_connection: bool,
}

impl Rejection {
    /// The status on the wire of a body the module sends.
    pub fn wire_status(&self) -> u16 {
        wire_status(self.code)
    }
}

/// The answer to a request rejected for `reason`. `has_error_page` tells whether the location
/// has an `error_page` for a code.
pub fn rejection(
    reason: Reason,
    satisfy_all: bool,
    has_error_page: impl Fn(u16) -> bool,
) -> Rejection {
    let close_connection = matches!(reason, Reason::NoCert | Reason::Verify);
    if !satisfy_all {
        // Another access module may still allow the request; only 401/403 let it.
        return Rejection {
            code: 403,
            body: None,
            close_connection,
        };
    }
    let code = reason.http_status();
    let body = (!has_error_page(code))
        .then(|| format!("auth_cert: {}: {}\n", reason.as_str(), reason.message()));
    Rejection {
        code,
        body,
        close_connection,
    }
}

/// The latest expiry of a token for `cert`: a token outlives neither the certificate nor, with
/// `auth_cert_max_age`, its authentication.
pub fn token_expiry_bound(
    cert: &CertificateInfo,
    auth_time: Option<i64>,
    max_age: Option<i64>,
) -> i64 {
    match (auth_time, max_age) {
        (Some(auth_time), Some(max_age)) => cert.not_after.min(auth_time.saturating_add(max_age)),
        _ => cert.not_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::{CertificateBuilder, OID_CN};

    const NOW: i64 = 1_000_000;

    /// [`super::evaluate`] without CRLs.
    fn evaluate(s: &Settings, f: Result<Forwarded, ()>, t: Tls<'_>, now: i64) -> Evaluation {
        super::evaluate(s, f, t, None, now)
    }

    fn cert(cn: &str) -> Rc<CertificateInfo> {
        let mut b = CertificateBuilder::default();
        b.attribute(OID_CN, Some(cn)).validity(NOW - 100, NOW + 100);
        Rc::new(b.build())
    }

    fn settings(lines: &[(Directive, &[&str])]) -> Settings {
        let mut s = Settings::default();
        for (d, args) in lines {
            s.apply(*d, args).unwrap();
        }
        s
    }

    fn tls(peer: &PeerCertificate, auth_time: Option<i64>, this_server: bool) -> Tls<'_> {
        Tls::Connection {
            peer: Some(peer),
            auth_time,
            this_server,
            early_data: false,
        }
    }

    fn early(peer: &PeerCertificate) -> Tls<'_> {
        Tls::Connection {
            peer: Some(peer),
            auth_time: Some(NOW),
            this_server: true,
            early_data: true,
        }
    }

    #[test]
    fn early_data_is_never_authenticated() {
        let peer = PeerCertificate::Verified(Verified::new(cert("alice")));
        for mode in ["on", "optional"] {
            let s = settings(&[(Directive::AuthCert, &[mode])]);
            let e = evaluate(&s, Ok(Forwarded::Nothing), early(&peer), NOW);
            assert_eq!(e.outcome, Err(Reason::EarlyData));
            assert!(!e.trusted);
            assert!(e.trusted_cert().is_none());
            assert_eq!((e.source, e.auth_time, e.age), (None, None, None));
        }
        let on = settings(&[(Directive::AuthCert, &["on"])]);
        let e = evaluate(&on, Ok(Forwarded::Nothing), early(&peer), NOW);
        assert_eq!(
            action(&on, &e.outcome, true),
            Action::Reject(Reason::EarlyData)
        );
        // Not even under `auth_cert_stale reauth`: a stale session in early data is refused,
        // never redirected.
        let aged = settings(&[(Directive::AuthCert, &["on"]), (Directive::MaxAge, &["60"])]);
        let old = Tls::Connection {
            peer: Some(&peer),
            auth_time: Some(NOW - 3600),
            this_server: true,
            early_data: true,
        };
        let e = evaluate(&aged, Ok(Forwarded::Nothing), old, NOW);
        assert_eq!(
            action(&aged, &e.outcome, true),
            Action::Reject(Reason::EarlyData)
        );
        let optional = settings(&[(Directive::AuthCert, &["optional"])]);
        assert_eq!(action(&optional, &e.outcome, true), Action::Decline);
        // A forwarded credential in early data is replayable as well.
        let forwarded = Forwarded::Evaluated(Credential {
            source: Source::Header,
            cert: Some(cert("bob")),
            outcome: Ok("bob".into()),
            detail: None,
        });
        let e = evaluate(&on, Ok(forwarded), early(&peer), NOW);
        assert_eq!(e.outcome, Err(Reason::EarlyData));
        assert!(e.trusted_cert().is_none());
        // 425 with the module's body; the connection stays open for the retry after the
        // handshake.
        let r = rejection(Reason::EarlyData, true, |_| false);
        assert_eq!(
            (r.code, r.wire_status(), r.close_connection),
            (425, 425, false)
        );
        assert_eq!(
            r.body.as_deref(),
            Some(
                "auth_cert: early_data: the request was sent in TLS early data, send it again \
                 after the handshake\n"
            )
        );
        let r = rejection(Reason::EarlyData, true, |code| code == 425);
        assert_eq!((r.code, r.body), (425, None));
        let r = rejection(Reason::EarlyData, false, |_| false);
        assert_eq!((r.code, r.body), (403, None));
    }

    #[test]
    fn verified_certificate_of_this_server_passes() {
        let s = settings(&[(Directive::AuthCert, &["on"])]);
        let peer = PeerCertificate::Verified(Verified::new(cert("alice")));
        let e = evaluate(
            &s,
            Ok(Forwarded::Nothing),
            tls(&peer, Some(NOW - 5), true),
            NOW,
        );
        assert_eq!(e.outcome.as_deref(), Ok("alice"));
        assert!(e.trusted);
        assert_eq!((e.auth_time, e.age), (Some(NOW - 5), Some(5)));
        assert_eq!(e.source, Some(Source::Tls));
        assert_eq!(action(&s, &e.outcome, true), Action::Allow);
    }

    #[test]
    fn certificate_verified_by_another_server_is_not_trusted() {
        let s = settings(&[(Directive::AuthCert, &["on"])]);
        let peer = PeerCertificate::Verified(Verified::new(cert("alice")));
        let e = evaluate(
            &s,
            Ok(Forwarded::Nothing),
            tls(&peer, Some(NOW), false),
            NOW,
        );
        assert_eq!(e.outcome, Err(Reason::Verify));
        assert!(!e.trusted);
        assert!(e.trusted_cert().is_none());
        assert_eq!(e.auth_time, None);
        assert_eq!(action(&s, &e.outcome, true), Action::Reject(Reason::Verify));
    }

    #[test]
    fn missing_unverified_and_unkept_certificates() {
        let s = settings(&[(Directive::AuthCert, &["on"])]);
        let absent = PeerCertificate::Absent;
        let e = evaluate(&s, Ok(Forwarded::Nothing), tls(&absent, None, true), NOW);
        assert_eq!((e.outcome, e.source), (Err(Reason::NoCert), None));
        let e = evaluate(&s, Ok(Forwarded::Untrusted), tls(&absent, None, true), NOW);
        assert_eq!(e.outcome, Err(Reason::Network));
        assert!(e.detail.is_some());
        let e = evaluate(&s, Ok(Forwarded::Nothing), Tls::Plain, NOW);
        assert_eq!(e.outcome, Err(Reason::NoCert));
        let unverified = PeerCertificate::Unverified(Some(cert("mallory")));
        let e = evaluate(
            &s,
            Ok(Forwarded::Nothing),
            tls(&unverified, Some(NOW), true),
            NOW,
        );
        assert_eq!(e.outcome, Err(Reason::Verify));
        assert!(e.trusted_cert().is_none());
        let unkept = Tls::Connection {
            peer: None,
            auth_time: None,
            this_server: true,
            early_data: false,
        };
        let e = evaluate(&s, Ok(Forwarded::Nothing), unkept, NOW);
        assert_eq!(e.outcome, Err(Reason::Internal));
        let e = evaluate(&s, Err(()), Tls::Plain, NOW);
        assert_eq!(e.outcome, Err(Reason::Internal));
    }

    #[test]
    fn expired_and_stale() {
        let s = settings(&[(Directive::AuthCert, &["on"]), (Directive::MaxAge, &["60"])]);
        let peer = PeerCertificate::Verified(Verified::new(cert("alice")));
        let e = evaluate(
            &s,
            Ok(Forwarded::Nothing),
            tls(&peer, Some(NOW - 60), true),
            NOW,
        );
        assert_eq!(e.outcome.as_deref(), Ok("alice"));
        let e = evaluate(
            &s,
            Ok(Forwarded::Nothing),
            tls(&peer, Some(NOW - 61), true),
            NOW,
        );
        assert_eq!(e.outcome, Err(Reason::Stale));
        assert_eq!(action(&s, &e.outcome, true), Action::Reauthenticate);
        assert_eq!(action(&s, &e.outcome, false), Action::Reject(Reason::Stale));
        // A session without a stamp (made before the module was loaded) is stale.
        let e = evaluate(&s, Ok(Forwarded::Nothing), tls(&peer, None, true), NOW);
        assert_eq!(e.outcome, Err(Reason::Stale));
        let e = evaluate(
            &s,
            Ok(Forwarded::Nothing),
            tls(&peer, Some(NOW), true),
            NOW + 101,
        );
        assert_eq!(e.outcome, Err(Reason::Expired));
        let reject = settings(&[
            (Directive::AuthCert, &["on"]),
            (Directive::MaxAge, &["60"]),
            (Directive::Stale, &["reject"]),
        ]);
        assert_eq!(
            action(&reject, &Err(Reason::Stale), true),
            Action::Reject(Reason::Stale)
        );
    }

    #[test]
    fn forwarded_credential_comes_first() {
        let s = settings(&[(Directive::AuthCert, &["on"])]);
        let peer = PeerCertificate::Verified(Verified::new(cert("alice")));
        let forwarded = Forwarded::Evaluated(Credential {
            source: Source::Header,
            cert: Some(cert("bob")),
            outcome: Ok("bob".into()),
            detail: None,
        });
        let e = evaluate(&s, Ok(forwarded), tls(&peer, Some(NOW), true), NOW);
        assert_eq!(e.outcome.as_deref(), Ok("bob"));
        assert_eq!(e.source, Some(Source::Header));
        assert_eq!(e.auth_time, None);
    }

    #[test]
    fn revoked_certificates_are_refused_whatever_their_source() {
        use crate::revocation::tests::{ca, crl_der, leaf};
        use crate::revocation::{Crl, RevocationList};
        let ca = ca("Test CA");
        let der = crl_der(&ca, &[(&[0x10], None)], 1_800_000_000);
        let list = RevocationList::new(vec![Crl::from_der(&der, Some(&ca.der)).unwrap()]);
        let s = settings(&[(Directive::AuthCert, &["on"])]);
        let now = 1_750_000_000;
        let revoked = Rc::new(leaf(&ca, &[0x10]));
        let good = Rc::new(leaf(&ca, &[0x11]));
        for (cert, revoked) in [(&revoked, true), (&good, false)] {
            let peer = PeerCertificate::Verified(Verified::new(cert.clone()));
            let e = super::evaluate(
                &s,
                Ok(Forwarded::Nothing),
                tls(&peer, Some(now), true),
                Some(&list),
                now,
            );
            let forwarded = Forwarded::Evaluated(Credential {
                source: Source::Header,
                cert: Some(cert.clone()),
                outcome: Ok("alice".into()),
                detail: None,
            });
            let f = super::evaluate(&s, Ok(forwarded), Tls::Plain, Some(&list), now);
            for e in [e, f] {
                if revoked {
                    assert_eq!(e.outcome, Err(Reason::Revoked));
                    assert!(e.trusted);
                    assert_eq!(
                        e.detail.as_deref(),
                        Some("serial 10 revoked on 2023-11-14T22:15:00Z")
                    );
                    assert_eq!(
                        action(&s, &e.outcome, true),
                        Action::Reject(Reason::Revoked)
                    );
                    let r = rejection(Reason::Revoked, true, |_| false);
                    assert_eq!((r.code, r.close_connection), (403, false));
                } else {
                    assert_eq!(e.outcome.as_deref(), Ok("alice"));
                }
            }
        }
        // Without CRLs nothing is revoked.
        let peer = PeerCertificate::Verified(Verified::new(revoked));
        let e = evaluate(&s, Ok(Forwarded::Nothing), tls(&peer, Some(now), true), now);
        assert_eq!(e.outcome.as_deref(), Ok("alice"));
    }

    #[test]
    fn optional_and_off_never_reject() {
        for mode in ["optional", "off"] {
            let s = settings(&[(Directive::AuthCert, &[mode])]);
            assert_eq!(action(&s, &Err(Reason::NoCert), true), Action::Decline);
        }
    }

    #[test]
    fn the_gate_logs_exactly_when_it_rejects_or_reauthenticates() {
        let outcomes = [
            Ok(Rc::from("alice")),
            Err(Reason::Stale),
            Err(Reason::Identity),
        ];
        for mode in ["on", "optional", "off"] {
            for stale in ["reauth", "reject"] {
                let s = settings(&[
                    (Directive::AuthCert, &[mode]),
                    (Directive::MaxAge, &["60"]),
                    (Directive::Stale, &[stale]),
                ]);
                for outcome in &outcomes {
                    for satisfy_all in [true, false] {
                        let logs = matches!(
                            action(&s, outcome, satisfy_all),
                            Action::Reject(_) | Action::Reauthenticate
                        );
                        assert_eq!(gate_logs(&s, outcome), logs, "{mode} {stale} {outcome:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn http3_refuses_exactly_the_locations_that_can_redirect() {
        let origin = "\"auth_cert\" in x.conf:3";
        for mode in ["on", "optional", "off"] {
            for age in [None, Some("60"), Some("off")] {
                for stale in [None, Some("reauth"), Some("reject")] {
                    let mut s = settings(&[(Directive::AuthCert, &[mode])]);
                    if let Some(age) = age {
                        s.apply(Directive::MaxAge, &[age]).unwrap();
                    }
                    if let Some(stale) = stale {
                        s.apply(Directive::Stale, &[stale]).unwrap();
                    }
                    for satisfy_all in [true, false] {
                        let redirects = mode == "on"
                            && age == Some("60")
                            && stale != Some("reject")
                            && satisfy_all;
                        let case = format!("{mode} {age:?} {stale:?} {satisfy_all}");
                        assert_eq!(may_reauthenticate(&s, satisfy_all), redirects, "{case}");
                        assert_eq!(
                            check_http3(&s, satisfy_all, origin).is_err(),
                            redirects,
                            "{case}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn http3_refuses_a_logout_location() {
        let s = settings(&[(Directive::Logout, &[])]);
        assert_eq!(
            check_http3_logout(&s, "/logout"),
            Err(
                "\"auth_cert_logout\" cannot end an HTTP/3 connection: the location \
                 \"/logout\" has \"auth_cert_logout\" and its server listens with \"quic\"; \
                 serve the logout from a server without \"quic\""
                    .to_owned()
            )
        );
        let s = settings(&[(Directive::AuthCert, &["on"])]);
        assert_eq!(check_http3_logout(&s, "/"), Ok(()));
    }

    #[test]
    fn http3_refuses_a_login_endpoint_with_an_age() {
        let s = settings(&[(Directive::Login, &[]), (Directive::MaxAge, &["1h"])]);
        assert!(check_http3(&s, true, "\"auth_cert_login\" in x.conf:3").is_err());
        let s = settings(&[
            (Directive::Login, &[]),
            (Directive::MaxAge, &["1h"]),
            (Directive::Stale, &["reject"]),
        ]);
        assert!(check_http3(&s, true, "\"auth_cert_login\" in x.conf:3").is_ok());
    }

    #[test]
    fn the_http3_refusal_names_the_location_and_the_remedy() {
        let s = settings(&[(Directive::AuthCert, &["on"]), (Directive::MaxAge, &["1h"])]);
        assert_eq!(
            check_http3(&s, true, "\"auth_cert\" in /etc/nginx/app.conf:12"),
            Err(
                "\"auth_cert_stale reauth\" (the default) cannot re-authenticate over HTTP/3: \
                 the location of \"auth_cert\" in /etc/nginx/app.conf:12 has \
                 \"auth_cert_max_age\" and its server listens with \"quic\"; use \
                 \"auth_cert_stale reject\" there, or remove \"auth_cert_max_age\""
                    .to_owned()
            )
        );
    }

    #[test]
    fn rejection_answers() {
        let r = rejection(Reason::Policy, true, |_| false);
        assert_eq!(r.code, 403);
        assert_eq!(r.wire_status(), 403);
        assert_eq!(
            r.body.as_deref(),
            Some("auth_cert: policy: the client certificate has no accepted certificate policy\n")
        );
        assert!(!r.close_connection);
        let r = rejection(Reason::NoCert, true, |_| false);
        assert_eq!(
            (r.code, r.wire_status(), r.close_connection),
            (496, 400, true)
        );
        let r = rejection(Reason::Verify, true, |code| code == 495);
        assert_eq!((r.code, r.body, r.close_connection), (495, None, true));
        let r = rejection(Reason::Stale, false, |_| false);
        assert_eq!((r.code, r.body), (403, None));
    }

    #[test]
    fn token_expiry_is_bounded() {
        let c = cert("alice");
        assert_eq!(token_expiry_bound(&c, None, None), NOW + 100);
        assert_eq!(token_expiry_bound(&c, Some(NOW), None), NOW + 100);
        assert_eq!(token_expiry_bound(&c, Some(NOW), Some(30)), NOW + 30);
        assert_eq!(token_expiry_bound(&c, Some(NOW), Some(300)), NOW + 100);
    }

    #[test]
    fn a_connection_judges_once_per_policy() {
        let s = settings(&[(Directive::AuthCert, &["on"])]);
        let v = Verified::new(cert("alice"));
        assert_eq!(v.judge(&s.policy).as_deref(), Ok("alice"));
        let other = settings(&[(Directive::Identity, &["serial"])]);
        assert_eq!(v.judge(&other.policy), Err(Reason::Identity));
        assert_eq!(v.judge(&s.policy).as_deref(), Ok("alice"));
    }
}
