//! The module's directives as plain data: parsing their arguments and merging levels.
//!
//! The nginx side ([`crate::conf`]) only hands each directive's words to [`Settings::apply`],
//! so every message `nginx -t` prints for a bad value is produced (and tested) here.

use std::path::PathBuf;

use regex::Regex;

use crate::directive::Directive;
use crate::forwarded::{ArgSource, HeaderSource};
use crate::identity::{IdentityRegex, IdentitySource};
use crate::policy::{self, Policy};
use crate::time;
use crate::token::TokenSettings;

/// `auth_cert on | optional | off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    On,
    Optional,
}

impl Mode {
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "on" => Some(Self::On),
            "optional" => Some(Self::Optional),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

/// `auth_cert_stale reauth | reject`: what a request gets when its authentication is older
/// than `auth_cert_max_age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    Reauth,
    Reject,
}

/// `auth_cert_crl file [refresh=time]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlSource {
    /// The PEM file, as written (relative to nginx's configuration prefix).
    pub file: String,
    /// Seconds between two checks of the file for a change, in each worker.
    pub refresh: i64,
}

/// Default `refresh=` of `auth_cert_crl`.
pub const DEFAULT_CRL_REFRESH: i64 = 60;

impl CrlSource {
    /// The arguments of `auth_cert_crl`.
    pub fn parse(args: &[&str]) -> Result<Self, String> {
        let (file, options) = match args.split_first() {
            Some((file, options)) if !file.is_empty() => (file, options),
            _ => return Err("missing file".to_owned()),
        };
        let mut refresh = None;
        for option in options {
            match option.strip_prefix("refresh=") {
                Some(_) if refresh.is_some() => {
                    return Err("duplicate \"refresh=\" parameter".to_owned())
                }
                Some(word) => {
                    let seconds = time::parse(word)
                        .ok()
                        .filter(|s| (1..=MAX_AGE_LIMIT).contains(s))
                        .ok_or_else(|| format!("invalid value \"{option}\""))?;
                    refresh = Some(seconds);
                }
                None => return Err(format!("invalid parameter \"{option}\"")),
            }
        }
        Ok(CrlSource {
            file: (*file).to_owned(),
            refresh: refresh.unwrap_or(DEFAULT_CRL_REFRESH),
        })
    }
}

/// `auth_cert_handshake require | http`: how a server's TLS handshake treats a client that
/// sends no certificate, or one that does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// The handshake fails with a TLS alert (`certificate_required`, `unknown_ca`, ...):
    /// browsers then forget a cached "no certificate" choice.
    Require,
    /// The handshake completes and the module answers at the HTTP level, as nginx does.
    Http,
}

impl Handshake {
    /// Whether a server with nginx's `ssl_verify_client` value `verify` (as nginx stores it:
    /// 0 `off`, 1 `on`, 2 `optional`, 3 `optional_no_ca`) can run this mode; the message for
    /// `nginx -t` otherwise. `require` needs certificates that nginx verifies: without
    /// `ssl_verify_client` no certificate is asked for, and `optional_no_ca` accepts
    /// certificates that `require` would refuse.
    pub fn check_verify_client(self, verify: usize) -> Result<(), String> {
        match (self, verify) {
            (Self::Require, 0 | 3) => Err(format!(
                "\"{} require\" requires \"ssl_verify_client on\" or \"optional\" in its \
                 server",
                Directive::Handshake.name()
            )),
            _ => Ok(()),
        }
    }
}

/// The settings of one configuration level (http, server or location).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    mode: Option<Mode>,
    pub policy: Policy,
    pub token: TokenSettings,
    /// Where relative file names in directives are found: nginx's configuration prefix, set by
    /// the nginx side when the level is created.
    pub conf_prefix: PathBuf,
    /// `auth_cert_header`.
    pub header: Option<HeaderSource>,
    /// `auth_cert_identity_arg`.
    pub identity_arg: Option<ArgSource>,
    /// `auth_cert_crl`.
    pub crl: Option<CrlSource>,
    /// `auth_cert_max_age`: set here (`Some`), and then a limit in seconds or `off` (`None`).
    max_age: Option<Option<i64>>,
    stale: Option<Stale>,
    handshake: Option<Handshake>,
    /// `auth_cert_metrics` (a content handler, not inherited).
    pub metrics: bool,
    /// `auth_cert_logout` (a content handler, not inherited).
    pub logout: Option<Logout>,
}

/// `auth_cert_logout [redirect=url]`: where the answer sends the client, if anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logout {
    /// `303` to this URL; `None`: `204`.
    pub redirect: Option<String>,
}

impl Logout {
    pub fn parse(args: &[&str]) -> Result<Self, String> {
        match args {
            [] => Ok(Self { redirect: None }),
            [word] => match word.strip_prefix("redirect=") {
                Some(url)
                    if url.is_empty() || url.bytes().any(|b| b.is_ascii_control() || b == b' ') =>
                {
                    Err(format!("invalid redirect URL \"{}\"", url.escape_debug()))
                }
                Some(url) => Ok(Self {
                    redirect: Some(url.to_owned()),
                }),
                None => Err(format!(
                    "invalid value \"{}\", it must be \"redirect=URL\"",
                    word.escape_debug()
                )),
            },
            _ => Err("invalid number of arguments".into()),
        }
    }
}

impl Settings {
    pub fn mode(&self) -> Mode {
        if self.token.login.is_some() {
            // A login endpoint authenticates as `auth_cert on`, whatever is inherited.
            return Mode::On;
        }
        self.mode.unwrap_or(Mode::Off)
    }

    /// The content handler directive of the module written at this level, if any.
    pub fn content_handler(&self) -> Option<Directive> {
        if self.metrics {
            Some(Directive::Metrics)
        } else if self.logout.is_some() {
            Some(Directive::Logout)
        } else if self.token.login.is_some() {
            Some(Directive::Login)
        } else if self.token.jwks {
            Some(Directive::Jwks)
        } else {
            None
        }
    }

    /// Whether `auth_cert` itself is written at this level (not inherited).
    pub fn has_mode(&self) -> bool {
        self.mode.is_some()
    }

    /// `auth_cert_max_age` in seconds; `None` when off.
    pub fn max_age(&self) -> Option<i64> {
        self.max_age.flatten()
    }

    pub fn stale(&self) -> Stale {
        self.stale.unwrap_or(Stale::Reauth)
    }

    /// `auth_cert_handshake`; meaningful at the server level.
    pub fn handshake(&self) -> Handshake {
        self.handshake.unwrap_or(Handshake::Http)
    }

    /// Inherits from the enclosing level what this level does not set.
    pub fn merge(&mut self, parent: &Settings) {
        if self.mode.is_none() {
            self.mode = parent.mode;
        }
        if self.max_age.is_none() {
            self.max_age = parent.max_age;
        }
        if self.stale.is_none() {
            self.stale = parent.stale;
        }
        if self.handshake.is_none() {
            self.handshake = parent.handshake;
        }
        self.policy.merge(&parent.policy);
        self.token.merge(&parent.token);
        if self.header.is_none() {
            self.header.clone_from(&parent.header);
        }
        if self.identity_arg.is_none() {
            self.identity_arg.clone_from(&parent.identity_arg);
        }
        if self.crl.is_none() {
            self.crl.clone_from(&parent.crl);
        }
    }

    /// Applies `directive` with its arguments `args` (without the name).
    pub fn apply(&mut self, directive: Directive, args: &[&str]) -> Result<(), String> {
        let name = directive.name();
        let duplicate = || format!("\"{name}\" directive is duplicate");
        let policy = &mut self.policy;
        match directive {
            Directive::AuthCert => {
                if self.mode.is_some() {
                    return Err(duplicate());
                }
                let word = one(name, args)?;
                self.mode = Some(Mode::parse(word).ok_or_else(|| {
                    format!(
                        "invalid value \"{word}\" in \"{name}\" directive, it must be \"on\", \
                         \"optional\" or \"off\""
                    )
                })?);
            }
            Directive::Identity => {
                if policy.sources.is_some() {
                    return Err(duplicate());
                }
                policy.sources = Some(each(name, args, IdentitySource::parse)?);
            }
            Directive::IdentityRegex => {
                if policy.identity_regex.is_some() {
                    return Err(duplicate());
                }
                let pattern = one(name, args)?;
                policy.identity_regex = Some(
                    IdentityRegex::new(pattern).map_err(|e| invalid_regex(name, pattern, &e))?,
                );
            }
            Directive::Eku => {
                if !policy.eku.is_empty() {
                    return Err(duplicate());
                }
                policy.eku = each(name, args, policy::parse_eku)?;
            }
            Directive::KeyUsage => {
                if policy.key_usage != 0 {
                    return Err(duplicate());
                }
                policy.key_usage = each(name, args, policy::parse_key_usage)?
                    .into_iter()
                    .fold(0, |bits, bit| bits | bit);
            }
            Directive::Policy => {
                if !policy.policies.is_empty() {
                    return Err(duplicate());
                }
                policy.policies = each(name, args, policy::parse_policy_oid)?;
            }
            Directive::Issuer => {
                if policy.issuer.is_some() {
                    return Err(duplicate());
                }
                let pattern = one(name, args)?;
                policy.issuer =
                    Some(Regex::new(pattern).map_err(|e| invalid_regex(name, pattern, &e))?);
            }
            Directive::MaxAge => {
                if self.max_age.is_some() {
                    return Err(duplicate());
                }
                let word = one(name, args)?;
                self.max_age =
                    Some(parse_max_age(word).ok_or_else(|| {
                        format!("invalid value \"{word}\" in \"{name}\" directive")
                    })?);
            }
            Directive::Stale => {
                if self.stale.is_some() {
                    return Err(duplicate());
                }
                let word = one(name, args)?;
                self.stale = Some(match word {
                    "reauth" => Stale::Reauth,
                    "reject" => Stale::Reject,
                    _ => {
                        return Err(format!(
                            "invalid value \"{word}\" in \"{name}\" directive, it must be \
                             \"reauth\" or \"reject\""
                        ))
                    }
                });
            }
            Directive::Handshake => {
                if self.handshake.is_some() {
                    return Err(duplicate());
                }
                let word = one(name, args)?;
                self.handshake = Some(match word {
                    "require" => Handshake::Require,
                    "http" => Handshake::Http,
                    _ => {
                        return Err(format!(
                            "invalid value \"{word}\" in \"{name}\" directive, it must be \
                             \"require\" or \"http\""
                        ))
                    }
                });
            }
            Directive::Header => {
                if self.header.is_some() {
                    return Err(duplicate());
                }
                self.header = Some(HeaderSource::parse(args).map_err(|e| in_directive(name, &e))?);
            }
            Directive::IdentityArg => {
                if self.identity_arg.is_some() {
                    return Err(duplicate());
                }
                self.identity_arg =
                    Some(ArgSource::parse(args).map_err(|e| in_directive(name, &e))?);
            }
            Directive::Crl => {
                if self.crl.is_some() {
                    return Err(duplicate());
                }
                self.crl = Some(CrlSource::parse(args).map_err(|e| in_directive(name, &e))?);
            }
            Directive::Metrics | Directive::Logout | Directive::Login | Directive::Jwks
                if self.content_handler().is_some_and(|other| {
                    // auth_cert_login and auth_cert_jwks: the token settings tell.
                    other != directive
                        && [other, directive]
                            .iter()
                            .any(|d| matches!(d, Directive::Metrics | Directive::Logout))
                }) =>
            {
                let other = self.content_handler().map_or("", Directive::name);
                return Err(format!("\"{name}\" and \"{other}\" exclude each other"));
            }
            Directive::Metrics => {
                if self.metrics {
                    return Err(duplicate());
                }
                self.metrics = true;
            }
            Directive::Logout => {
                if self.logout.is_some() {
                    return Err(duplicate());
                }
                self.logout =
                    Some(Logout::parse(args).map_err(|e| format!("{e} in \"{name}\" directive"))?);
            }
            Directive::Zone => return Err(format!("\"{name}\" is an http directive")),
            _ => self.token.apply(directive, args, &self.conf_prefix)?,
        }
        Ok(())
    }
}

/// Longest accepted `auth_cert_max_age`: a year, far below any overflow of Unix seconds.
pub const MAX_AGE_LIMIT: i64 = 365 * 24 * 60 * 60;

/// `auth_cert_max_age`: `off` (`Some(None)`) or from one second to [`MAX_AGE_LIMIT`].
fn parse_max_age(word: &str) -> Option<Option<i64>> {
    if word == "off" {
        return Some(None);
    }
    let seconds = time::parse(word).ok()?;
    (1..=MAX_AGE_LIMIT)
        .contains(&seconds)
        .then_some(Some(seconds))
}

fn one<'a>(name: &str, args: &[&'a str]) -> Result<&'a str, String> {
    match args {
        [word] => Ok(word),
        _ => Err(format!(
            "invalid number of arguments in \"{name}\" directive"
        )),
    }
}

fn each<T>(
    name: &str,
    args: &[&str],
    parse: fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    if args.is_empty() {
        return Err(format!(
            "invalid number of arguments in \"{name}\" directive"
        ));
    }
    args.iter()
        .map(|w| parse(w).map_err(|e| format!("{e} in \"{name}\" directive")))
        .collect()
}

fn in_directive(name: &str, error: &str) -> String {
    format!("{error} in \"{name}\" directive")
}

fn invalid_regex(name: &str, pattern: &str, error: &dyn core::fmt::Display) -> String {
    format!("invalid regex \"{pattern}\" in \"{name}\" directive: {error}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identity::DEFAULT_SOURCES;

    /// The directive of a name, for tests written with directive names.
    pub(crate) fn d(name: &str) -> Directive {
        Directive::from_name(name).expect("a directive of the module")
    }

    fn settings(lines: &[(&str, &[&str])]) -> Result<Settings, String> {
        let mut s = Settings::default();
        for (name, args) in lines {
            s.apply(d(name), args)?;
        }
        Ok(s)
    }

    #[test]
    fn mode_words() {
        assert_eq!(Mode::parse("on"), Some(Mode::On));
        assert_eq!(Mode::parse("optional"), Some(Mode::Optional));
        assert_eq!(Mode::parse("off"), Some(Mode::Off));
        assert_eq!(Mode::parse("On"), None);
        assert_eq!(Settings::default().mode(), Mode::Off);
    }

    #[test]
    fn metrics_is_a_content_handler_of_its_own() {
        assert!(settings(&[("auth_cert_metrics", &[])]).unwrap().metrics);
        assert!(!Settings::default().metrics);
        let dup = settings(&[("auth_cert_metrics", &[]), ("auth_cert_metrics", &[])]);
        assert_eq!(
            dup.unwrap_err(),
            "\"auth_cert_metrics\" directive is duplicate"
        );
        assert!(settings(&[("auth_cert_metrics", &[]), ("auth_cert_jwks", &[])]).is_err());
        assert!(settings(&[("auth_cert_jwks", &[]), ("auth_cert_metrics", &[])]).is_err());
        assert!(settings(&[("auth_cert_metrics", &[]), ("auth_cert_login", &[])]).is_err());
        assert!(settings(&[("auth_cert_zone", &["a:1m"])]).is_err());
    }

    #[test]
    fn logout_words() {
        let logout = |args: &[&str]| settings(&[("auth_cert_logout", args)]).map(|s| s.logout);
        assert_eq!(logout(&[]), Ok(Some(Logout { redirect: None })));
        assert_eq!(
            logout(&["redirect=https://app.example/bye"]),
            Ok(Some(Logout {
                redirect: Some("https://app.example/bye".into())
            }))
        );
        assert!(logout(&["redirect="]).is_err());
        assert!(logout(&["redirect=/a b"]).is_err());
        assert!(logout(&["redirect=/a\nb"]).is_err());
        assert!(logout(&["/bye"]).unwrap_err().contains("auth_cert_logout"));
        assert!(settings(&[("auth_cert_logout", &[]), ("auth_cert_logout", &[])]).is_err());
        let both = settings(&[("auth_cert_logout", &[]), ("auth_cert_metrics", &[])]);
        assert_eq!(
            both.unwrap_err(),
            "\"auth_cert_metrics\" and \"auth_cert_logout\" exclude each other"
        );
        assert!(settings(&[("auth_cert_login", &[]), ("auth_cert_logout", &[])]).is_err());
        assert_eq!(Settings::default().content_handler(), None);
    }

    #[test]
    fn bad_mode_names_directive_and_value() {
        let err = settings(&[("auth_cert", &["yes"])]).unwrap_err();
        assert_eq!(
            err,
            "invalid value \"yes\" in \"auth_cert\" directive, it must be \"on\", \"optional\" \
             or \"off\""
        );
    }

    #[test]
    fn duplicates_are_refused() {
        let err = settings(&[("auth_cert", &["on"]), ("auth_cert", &["off"])]).unwrap_err();
        assert_eq!(err, "\"auth_cert\" directive is duplicate");
        let err = settings(&[
            ("auth_cert_identity", &["cn"]),
            ("auth_cert_identity", &["uid"]),
        ])
        .unwrap_err();
        assert_eq!(err, "\"auth_cert_identity\" directive is duplicate");
    }

    #[test]
    fn identity_sources_in_order() {
        let s = settings(&[("auth_cert_identity", &["upn", "oid:2.5.4.5", "cn"])]).unwrap();
        assert_eq!(
            s.policy.sources(),
            &[
                IdentitySource::Upn,
                IdentitySource::Oid("2.5.4.5".into()),
                IdentitySource::Cn
            ]
        );
        let err = settings(&[("auth_cert_identity", &["uid", "nick"])]).unwrap_err();
        assert_eq!(
            err,
            "unknown identity source \"nick\" in \"auth_cert_identity\" directive"
        );
    }

    #[test]
    fn regexes_are_compiled_at_configuration_time() {
        let err = settings(&[("auth_cert_identity_regex", &["(\\d+"])]).unwrap_err();
        assert!(
            err.starts_with("invalid regex \"(\\d+\" in \"auth_cert_identity_regex\" directive"),
            "{err}"
        );
        let err = settings(&[("auth_cert_issuer", &["[a-"])]).unwrap_err();
        assert!(err.contains("\"auth_cert_issuer\""), "{err}");
    }

    #[test]
    fn policy_directives() {
        let s = settings(&[
            ("auth_cert_eku", &["clientAuth", "1.3.6.1.4.1.311.20.2.2"]),
            ("auth_cert_key_usage", &["digitalSignature", "keyAgreement"]),
            ("auth_cert_policy", &["2.16.840.1.101.2.1.11.42"]),
        ])
        .unwrap();
        assert_eq!(s.policy.eku.len(), 2);
        assert_eq!(s.policy.key_usage, 0b1_0001);
        assert_eq!(
            s.policy.policies,
            vec!["2.16.840.1.101.2.1.11.42".to_owned()]
        );
        let err = settings(&[("auth_cert_policy", &["1.2.x"])]).unwrap_err();
        assert_eq!(
            err,
            "invalid certificate policy OID \"1.2.x\" in \"auth_cert_policy\" directive"
        );
    }

    #[test]
    fn forwarded_credentials() {
        let s = settings(&[
            (
                "auth_cert_header",
                &["X-Client-Cert", "from=10.0.0.0/8", "ca=certs/ca.crt"],
            ),
            ("auth_cert_identity_arg", &["as_user", "from=127.0.0.1"]),
        ])
        .unwrap();
        assert_eq!(
            s.header.as_ref().map(|h| h.ca.as_str()),
            Some("certs/ca.crt")
        );
        assert_eq!(
            s.identity_arg.as_ref().map(|a| a.name.as_str()),
            Some("as_user")
        );

        let err =
            settings(&[("auth_cert_header", &["X", "from=10.0.0.0/40", "ca=c"])]).unwrap_err();
        assert_eq!(
            err,
            "invalid network \"10.0.0.0/40\" in \"auth_cert_header\" directive"
        );
        let err = settings(&[("auth_cert_identity_arg", &["u"])]).unwrap_err();
        assert_eq!(
            err,
            "missing \"from=\" parameter in \"auth_cert_identity_arg\" directive"
        );
        let err = settings(&[
            ("auth_cert_identity_arg", &["u", "from=::1"]),
            ("auth_cert_identity_arg", &["v", "from=::1"]),
        ])
        .unwrap_err();
        assert_eq!(err, "\"auth_cert_identity_arg\" directive is duplicate");

        let mut child = Settings::default();
        child.merge(&s);
        assert_eq!(child.header, s.header);
        assert_eq!(child.identity_arg, s.identity_arg);
    }

    #[test]
    fn merge_inherits_mode_and_policy() {
        let parent =
            settings(&[("auth_cert", &["on"]), ("auth_cert_identity", &["email"])]).unwrap();
        let mut child = Settings::default();
        child.merge(&parent);
        assert_eq!(child.mode(), Mode::On);
        assert!(child.has_mode());
        assert_eq!(child.policy.sources(), &[IdentitySource::Email]);

        let mut off = settings(&[("auth_cert", &["off"])]).unwrap();
        off.merge(&parent);
        assert_eq!(off.mode(), Mode::Off);
        assert_eq!(Settings::default().policy.sources(), &DEFAULT_SOURCES);
    }

    #[test]
    fn max_age_and_stale() {
        let s = settings(&[
            ("auth_cert_max_age", &["15m"]),
            ("auth_cert_stale", &["reject"]),
        ])
        .unwrap();
        assert_eq!(s.max_age(), Some(900));
        assert_eq!(s.stale(), Stale::Reject);
        let d = Settings::default();
        assert_eq!(d.max_age(), None);
        assert_eq!(d.stale(), Stale::Reauth);

        let mut child = Settings::default();
        child.merge(&s);
        assert_eq!(child.max_age(), Some(900));
        assert_eq!(child.stale(), Stale::Reject);
        let mut off = settings(&[("auth_cert_max_age", &["off"])]).unwrap();
        off.merge(&s);
        assert_eq!(off.max_age(), None);
    }

    #[test]
    fn max_age_and_stale_errors() {
        let err = settings(&[("auth_cert_max_age", &["15x"])]).unwrap_err();
        assert_eq!(
            err,
            "invalid value \"15x\" in \"auth_cert_max_age\" directive"
        );
        let err = settings(&[("auth_cert_max_age", &["0"])]).unwrap_err();
        assert_eq!(
            err,
            "invalid value \"0\" in \"auth_cert_max_age\" directive"
        );
        let err = settings(&[("auth_cert_max_age", &["1m", "2m"])]).unwrap_err();
        assert_eq!(
            err,
            "invalid number of arguments in \"auth_cert_max_age\" directive"
        );
        let err = settings(&[
            ("auth_cert_max_age", &["1m"]),
            ("auth_cert_max_age", &["off"]),
        ])
        .unwrap_err();
        assert_eq!(err, "\"auth_cert_max_age\" directive is duplicate");
        let err = settings(&[("auth_cert_stale", &["logout"])]).unwrap_err();
        assert_eq!(
            err,
            "invalid value \"logout\" in \"auth_cert_stale\" directive, it must be \"reauth\" \
             or \"reject\""
        );
        let err = settings(&[
            ("auth_cert_stale", &["reject"]),
            ("auth_cert_stale", &["reauth"]),
        ])
        .unwrap_err();
        assert_eq!(err, "\"auth_cert_stale\" directive is duplicate");
    }

    #[test]
    fn crl_file_and_refresh() {
        let s = settings(&[("auth_cert_crl", &["crl/ca.crl"])]).unwrap();
        assert_eq!(
            s.crl,
            Some(CrlSource {
                file: "crl/ca.crl".into(),
                refresh: 60
            })
        );
        let s = settings(&[("auth_cert_crl", &["ca.crl", "refresh=1s"])]).unwrap();
        assert_eq!(s.crl.as_ref().map(|c| c.refresh), Some(1));
        let mut child = Settings::default();
        child.merge(&s);
        assert_eq!(child.crl, s.crl);
        for (args, message) in [
            (
                &["ca.crl", "refresh=0"][..],
                "invalid value \"refresh=0\" in \"auth_cert_crl\" directive",
            ),
            (
                &["ca.crl", "refresh=1x"][..],
                "invalid value \"refresh=1x\" in \"auth_cert_crl\" directive",
            ),
            (
                &["ca.crl", "every=1m"][..],
                "invalid parameter \"every=1m\" in \"auth_cert_crl\" directive",
            ),
            (
                &["ca.crl", "refresh=1m", "refresh=2m"][..],
                "duplicate \"refresh=\" parameter in \"auth_cert_crl\" directive",
            ),
            (&[""][..], "missing file in \"auth_cert_crl\" directive"),
        ] {
            assert_eq!(settings(&[("auth_cert_crl", args)]).unwrap_err(), message);
        }
        let err = settings(&[("auth_cert_crl", &["a"]), ("auth_cert_crl", &["b"])]).unwrap_err();
        assert_eq!(err, "\"auth_cert_crl\" directive is duplicate");
    }

    #[test]
    fn handshake() {
        assert_eq!(Settings::default().handshake(), Handshake::Http);
        let s = settings(&[("auth_cert_handshake", &["require"])]).unwrap();
        assert_eq!(s.handshake(), Handshake::Require);
        let mut child = Settings::default();
        child.merge(&s);
        assert_eq!(child.handshake(), Handshake::Require);
        let mut http = settings(&[("auth_cert_handshake", &["http"])]).unwrap();
        http.merge(&s);
        assert_eq!(http.handshake(), Handshake::Http);

        let err = settings(&[("auth_cert_handshake", &["fail"])]).unwrap_err();
        assert_eq!(
            err,
            "invalid value \"fail\" in \"auth_cert_handshake\" directive, it must be \
             \"require\" or \"http\""
        );
        let err = settings(&[
            ("auth_cert_handshake", &["http"]),
            ("auth_cert_handshake", &["require"]),
        ])
        .unwrap_err();
        assert_eq!(err, "\"auth_cert_handshake\" directive is duplicate");

        for verify in [1, 2] {
            assert_eq!(Handshake::Require.check_verify_client(verify), Ok(()));
        }
        for verify in [0, 3] {
            assert_eq!(
                Handshake::Require.check_verify_client(verify),
                Err(
                    "\"auth_cert_handshake require\" requires \"ssl_verify_client on\" or \
                     \"optional\" in its server"
                        .to_owned()
                )
            );
        }
        for verify in 0..4 {
            assert_eq!(Handshake::Http.check_verify_client(verify), Ok(()));
        }
    }

    #[test]
    fn login_authenticates_as_on() {
        let mut s = settings(&[
            ("auth_cert", &["optional"]),
            ("auth_cert_token_ttl", &["10m"]),
        ])
        .unwrap();
        assert_eq!(s.mode(), Mode::Optional);
        assert_eq!(s.token.ttl(), 600);
        s.apply(d("auth_cert_login"), &[]).unwrap();
        assert_eq!(s.mode(), Mode::On);
    }
}
