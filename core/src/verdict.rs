//! The outcome of evaluating a request: `$auth_cert_status`, `$auth_cert_reason` and the HTTP
//! answer a rejection gets.

/// `$auth_cert_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    None,
    Invalid,
    Denied,
    Stale,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::None => "none",
            Self::Invalid => "invalid",
            Self::Denied => "denied",
            Self::Stale => "stale",
            Self::Error => "error",
        }
    }
}

/// `$auth_cert_reason`: why a request is not `ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No client certificate on the connection.
    NoCert,
    /// The chain did not verify (only reachable with `ssl_verify_client optional_no_ca`).
    Verify,
    /// Outside notBefore..notAfter at the time of the request.
    Expired,
    /// The certificate verified but could not be parsed.
    Parse,
    /// No identity source matched.
    Identity,
    /// A required extended key usage is missing.
    Eku,
    /// A required key usage bit is missing.
    KeyUsage,
    /// None of the accepted certificate policies is present.
    Policy,
    /// The issuer DN does not match.
    Issuer,
    /// The certificate was verified longer ago than `auth_cert_max_age`.
    Stale,
    /// A forwarded certificate (`auth_cert_header`) is malformed or does not verify.
    Header,
    /// The certificate is on a CRL of `auth_cert_crl`.
    Revoked,
    /// A forwarded certificate came from a peer outside the trusted networks, and nothing
    /// else authenticates the request.
    Network,
    /// The request arrived in TLS 1.3 early data (0-RTT), which anyone who captured it can
    /// replay: never authenticated, answered `425 Too Early` (RFC 8470) so that the client
    /// sends it again after the handshake.
    EarlyData,
    /// An internal failure (memory), never the client's fault.
    Internal,
}

impl Reason {
    /// Every reason, in the order of [`Reason::index`].
    pub const ALL: [Reason; 15] = [
        Self::NoCert,
        Self::Verify,
        Self::Expired,
        Self::Parse,
        Self::Identity,
        Self::Eku,
        Self::KeyUsage,
        Self::Policy,
        Self::Issuer,
        Self::Stale,
        Self::Header,
        Self::Revoked,
        Self::Network,
        Self::EarlyData,
        Self::Internal,
    ];

    /// The position of this reason in [`Reason::ALL`]. The match is exhaustive, so a new
    /// reason cannot be added without a place; a unit test checks that `ALL` agrees.
    pub const fn index(self) -> usize {
        match self {
            Self::NoCert => 0,
            Self::Verify => 1,
            Self::Expired => 2,
            Self::Parse => 3,
            Self::Identity => 4,
            Self::Eku => 5,
            Self::KeyUsage => 6,
            Self::Policy => 7,
            Self::Issuer => 8,
            Self::Stale => 9,
            Self::Header => 10,
            Self::Revoked => 11,
            Self::Network => 12,
            Self::EarlyData => 13,
            Self::Internal => 14,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCert => "no_cert",
            Self::Verify => "verify",
            Self::Expired => "expired",
            Self::Parse => "parse",
            Self::Identity => "identity",
            Self::Eku => "eku",
            Self::KeyUsage => "key_usage",
            Self::Policy => "policy",
            Self::Issuer => "issuer",
            Self::Stale => "stale",
            Self::Header => "header",
            Self::Revoked => "revoked",
            Self::Network => "network",
            Self::EarlyData => "early_data",
            Self::Internal => "internal",
        }
    }

    pub fn status(self) -> Status {
        match self {
            Self::NoCert => Status::None,
            Self::Verify
            | Self::Expired
            | Self::Parse
            | Self::Header
            | Self::Network
            | Self::EarlyData
            | Self::Revoked => Status::Invalid,
            Self::Identity | Self::Eku | Self::KeyUsage | Self::Policy | Self::Issuer => {
                Status::Denied
            }
            Self::Stale => Status::Stale,
            Self::Internal => Status::Error,
        }
    }

    /// The status code handed to nginx: 496 and 495 keep nginx's meaning for a missing or
    /// unverified certificate (sent as 400, catchable with `error_page 495 496`), 403 for a
    /// certificate the policy refuses, 425 Too Early for a request in early data.
    pub fn http_status(self) -> u16 {
        match self {
            Self::NoCert => 496,
            Self::Verify => 495,
            Self::Stale => 401,
            Self::EarlyData => 425,
            Self::Internal => 500,
            _ => 403,
        }
    }

    /// One line for the response body and the log.
    pub fn message(self) -> &'static str {
        match self {
            Self::NoCert => "no client certificate was sent",
            Self::Verify => "the client certificate could not be verified",
            Self::Expired => "the client certificate is expired or not yet valid",
            Self::Parse => "the client certificate could not be parsed",
            Self::Identity => "no identity found in the client certificate",
            Self::Eku => "the client certificate lacks a required extended key usage",
            Self::KeyUsage => "the client certificate lacks a required key usage",
            Self::Policy => "the client certificate has no accepted certificate policy",
            Self::Issuer => "the client certificate issuer is not accepted",
            Self::Stale => "the client certificate authentication is older than allowed",
            Self::Header => "the forwarded client certificate is malformed or does not verify",
            Self::Network => "a forwarded client certificate is not accepted from this address",
            Self::EarlyData => {
                "the request was sent in TLS early data, send it again after the handshake"
            }
            Self::Revoked => "the client certificate is revoked",
            Self::Internal => "internal error",
        }
    }
}

/// The status code on the wire for a code handed to nginx: nginx answers its 495 and 496
/// with 400.
pub fn wire_status(code: u16) -> u16 {
    match code {
        495 | 496 => 400,
        other => other,
    }
}

/// The HTTP/1.x status line of a code the module sends that nginx has no reason phrase for
/// (nginx 1.28 leaves 425 without one).
pub fn status_line(code: u16) -> Option<&'static str> {
    match code {
        425 => Some("425 Too Early"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_reason() {
        assert_eq!(Reason::NoCert.status(), Status::None);
        assert_eq!(Reason::Verify.status(), Status::Invalid);
        assert_eq!(Reason::Expired.status(), Status::Invalid);
        assert_eq!(Reason::Eku.status(), Status::Denied);
        assert_eq!(Reason::Identity.status(), Status::Denied);
        assert_eq!(Reason::Internal.status(), Status::Error);
        assert_eq!(Reason::Stale.status(), Status::Stale);
        assert_eq!(Reason::Header.status(), Status::Invalid);
        assert_eq!(Reason::Network.status(), Status::Invalid);
        assert_eq!(Reason::EarlyData.status(), Status::Invalid);
        assert_eq!(Reason::Revoked.status(), Status::Invalid);
    }

    #[test]
    fn http_codes_keep_nginx_meaning() {
        assert_eq!(Reason::NoCert.http_status(), 496);
        assert_eq!(Reason::Verify.http_status(), 495);
        assert_eq!(Reason::Issuer.http_status(), 403);
        assert_eq!(Reason::Stale.http_status(), 401);
        assert_eq!(Reason::Header.http_status(), 403);
        assert_eq!(Reason::Network.http_status(), 403);
        assert_eq!(Reason::EarlyData.http_status(), 425);
        assert_eq!(wire_status(425), 425);
        assert_eq!(status_line(425), Some("425 Too Early"));
        assert_eq!(status_line(403), None);
        assert_eq!(Reason::Revoked.http_status(), 403);
        assert_eq!(wire_status(496), 400);
        assert_eq!(wire_status(495), 400);
        assert_eq!(wire_status(403), 403);
    }

    #[test]
    fn all_lists_every_reason_at_its_index() {
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
    }

    #[test]
    fn messages_are_single_lines() {
        for r in Reason::ALL {
            assert!(!r.message().contains('\n'));
            assert!(!r.as_str().is_empty());
        }
    }
}
