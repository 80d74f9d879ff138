//! The module's directives: each name written once, with the arguments and the contexts it
//! takes. The module crate builds nginx's command table from [`Directive::ALL`], and
//! [`crate::settings::Settings::apply`] dispatches on the same enum.

use core::ffi::CStr;

/// A directive of the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    AuthCert,
    Identity,
    IdentityRegex,
    Eku,
    KeyUsage,
    Policy,
    Issuer,
    MaxAge,
    Stale,
    Header,
    IdentityArg,
    Crl,
    TokenKey,
    TokenTtl,
    TokenIssuer,
    TokenAudience,
    TokenClaim,
    TokenAmr,
    Login,
    Jwks,
    Handshake,
    Zone,
    Metrics,
    Logout,
}

/// How many arguments a directive takes, as nginx checks them before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arguments {
    None,
    NoneOrOne,
    One,
    OneOrTwo,
    Two,
    OneOrMore,
    TwoOrMore,
}

/// Where a directive may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// `http`, `server` and `location`.
    Any,
    /// `location` only: the content handlers.
    Location,
    /// `http` and `server`: what applies to a server's TLS handshakes.
    Server,
    /// `http` only: the shared memory zone.
    Http,
}

impl Directive {
    /// Every directive, in the order of nginx's command table.
    pub const ALL: &[Directive] = &[
        Self::AuthCert,
        Self::Identity,
        Self::IdentityRegex,
        Self::Eku,
        Self::KeyUsage,
        Self::Policy,
        Self::Issuer,
        Self::MaxAge,
        Self::Stale,
        Self::Header,
        Self::IdentityArg,
        Self::Crl,
        Self::TokenKey,
        Self::TokenTtl,
        Self::TokenIssuer,
        Self::TokenAudience,
        Self::TokenClaim,
        Self::TokenAmr,
        Self::Login,
        Self::Jwks,
        Self::Handshake,
        Self::Zone,
        Self::Metrics,
        Self::Logout,
    ];

    /// The name, NUL-terminated: nginx compares command names with C strings.
    pub const fn c_name(self) -> &'static CStr {
        match self {
            Self::AuthCert => c"auth_cert",
            Self::Identity => c"auth_cert_identity",
            Self::IdentityRegex => c"auth_cert_identity_regex",
            Self::Eku => c"auth_cert_eku",
            Self::KeyUsage => c"auth_cert_key_usage",
            Self::Policy => c"auth_cert_policy",
            Self::Issuer => c"auth_cert_issuer",
            Self::MaxAge => c"auth_cert_max_age",
            Self::Stale => c"auth_cert_stale",
            Self::Header => c"auth_cert_header",
            Self::IdentityArg => c"auth_cert_identity_arg",
            Self::Crl => c"auth_cert_crl",
            Self::TokenKey => c"auth_cert_token_key",
            Self::TokenTtl => c"auth_cert_token_ttl",
            Self::TokenIssuer => c"auth_cert_token_issuer",
            Self::TokenAudience => c"auth_cert_token_audience",
            Self::TokenClaim => c"auth_cert_token_claim",
            Self::TokenAmr => c"auth_cert_token_amr",
            Self::Login => c"auth_cert_login",
            Self::Jwks => c"auth_cert_jwks",
            Self::Handshake => c"auth_cert_handshake",
            Self::Zone => c"auth_cert_zone",
            Self::Metrics => c"auth_cert_metrics",
            Self::Logout => c"auth_cert_logout",
        }
    }

    pub fn name(self) -> &'static str {
        // Every name above is ASCII.
        self.c_name().to_str().unwrap_or_default()
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|d| d.name() == name)
    }

    pub const fn arguments(self) -> Arguments {
        match self {
            Self::AuthCert
            | Self::IdentityRegex
            | Self::Issuer
            | Self::MaxAge
            | Self::Stale
            | Self::TokenTtl
            | Self::TokenIssuer
            | Self::Handshake
            | Self::Zone => Arguments::One,
            Self::Identity | Self::Eku | Self::KeyUsage | Self::Policy | Self::TokenAudience => {
                Arguments::OneOrMore
            }
            Self::Header | Self::IdentityArg | Self::TokenAmr => Arguments::TwoOrMore,
            Self::TokenKey | Self::Crl => Arguments::OneOrTwo,
            Self::TokenClaim => Arguments::Two,
            Self::Login | Self::Logout => Arguments::NoneOrOne,
            Self::Jwks | Self::Metrics => Arguments::None,
        }
    }

    pub const fn context(self) -> Context {
        match self {
            Self::Login | Self::Jwks | Self::Metrics | Self::Logout => Context::Location,
            Self::Handshake => Context::Server,
            Self::Zone => Context::Http,
            _ => Context::Any,
        }
    }

    /// Whether the directive belongs to the token settings.
    pub fn is_token(self) -> bool {
        matches!(
            self,
            Self::TokenKey
                | Self::TokenTtl
                | Self::TokenIssuer
                | Self::TokenAudience
                | Self::TokenClaim
                | Self::TokenAmr
                | Self::Login
                | Self::Jwks
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for &d in Directive::ALL {
            assert_eq!(Directive::from_name(d.name()), Some(d));
            assert!(d.name().starts_with("auth_cert"));
        }
        assert_eq!(Directive::from_name("auth_cert_nothing"), None);
    }

    /// The reference documents every directive the module registers, and nothing else: one
    /// `### name` section each.
    #[test]
    fn the_reference_documents_exactly_the_directives() {
        let reference = include_str!("../../docs/reference.md");
        let mut documented: Vec<&str> = reference
            .lines()
            .filter_map(|line| line.strip_prefix("### "))
            .filter(|heading| heading.starts_with("auth_cert"))
            .collect();
        documented.sort_unstable();
        let mut registered: Vec<&str> = Directive::ALL.iter().map(|d| d.name()).collect();
        registered.sort_unstable();
        assert_eq!(documented, registered);
    }
}
