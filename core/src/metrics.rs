//! The counters of `auth_cert_metrics`, and their Prometheus text (format 0.0.4).
//!
//! [`Counters`] is made of atomics only, so that an all-zero block of shared memory is a valid
//! set of counters, and so that every worker counts with one relaxed atomic addition: no lock on
//! the request path. No identity, serial or address is ever a label: every label value comes
//! from a fixed list below.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::decision::Forwarded;
use crate::forwarded::Source;
use crate::token::Algorithm;
use crate::verdict::Reason;

/// The upper bounds (seconds) of the buckets of `nginx_auth_cert_auth_age_seconds`.
pub const AGE_BUCKETS: [u64; 12] = [
    1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 604_800,
];

/// Why a TLS session was not resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its authentication is older than the handshake limit.
    Stale,
    /// Its authentication was ended by `auth_cert_logout`.
    Logout,
    Revoked,
    /// A stricter location found its authentication too old.
    Stepup,
}

impl Refusal {
    /// Every refusal, in the order of [`Refusal::index`].
    pub const ALL: [Refusal; 4] = [Self::Stale, Self::Logout, Self::Revoked, Self::Stepup];

    /// The position of this refusal in [`Refusal::ALL`] (an exhaustive match).
    pub const fn index(self) -> usize {
        match self {
            Self::Stale => 0,
            Self::Logout => 1,
            Self::Revoked => 2,
            Self::Stepup => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::Logout => "logout",
            Self::Revoked => "revoked",
            Self::Stepup => "stepup",
        }
    }
}

/// What became of a request that came with a forwarded credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedResult {
    /// A forwarded certificate that verified and passed the policy.
    Accepted,
    /// A forwarded certificate that is malformed, repeated, does not verify or fails the
    /// policy.
    Rejected,
    /// A forwarded certificate from a peer outside the trusted networks: ignored.
    Untrusted,
    /// An identity taken from `auth_cert_identity_arg`.
    Arg,
}

impl ForwardedResult {
    /// Every result, in the order of [`ForwardedResult::index`].
    pub const ALL: [ForwardedResult; 4] =
        [Self::Accepted, Self::Rejected, Self::Untrusted, Self::Arg];

    /// The position of this result in [`ForwardedResult::ALL`] (an exhaustive match).
    pub const fn index(self) -> usize {
        match self {
            Self::Accepted => 0,
            Self::Rejected => 1,
            Self::Untrusted => 2,
            Self::Arg => 3,
        }
    }

    /// The result of what a request forwarded; `None` when it forwarded nothing.
    pub fn of(forwarded: &Forwarded) -> Option<Self> {
        match forwarded {
            Forwarded::Nothing => None,
            Forwarded::Untrusted => Some(Self::Untrusted),
            Forwarded::Evaluated(c) if c.source == Source::Arg => Some(Self::Arg),
            Forwarded::Evaluated(c) if c.outcome.is_ok() => Some(Self::Accepted),
            Forwarded::Evaluated(_) => Some(Self::Rejected),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Untrusted => "untrusted",
            Self::Arg => "arg",
        }
    }
}

/// The counters, summed over every worker of an nginx since its zone was created.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Counters {
    /// `ok` first, then one per reason, at its [`Reason::index`].
    requests: [AtomicU64; 1 + Reason::ALL.len()],
    reauth: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    tokens: [AtomicU64; Algorithm::ALL.len()],
    forwarded: [AtomicU64; ForwardedResult::ALL.len()],
    /// Not cumulative: one bucket per observation, the last one for above every bound.
    age_buckets: [AtomicU64; AGE_BUCKETS.len() + 1],
    age_count: AtomicU64,
    age_sum: AtomicU64,
}

/// The `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

impl Counters {
    /// An evaluated request: accepted (with the age of its authentication, when known), or
    /// refused for `reason`.
    pub fn request(&self, outcome: Result<Option<i64>, Reason>) {
        match outcome {
            Ok(age) => {
                add(&self.requests[0]);
                if let Some(age) = age {
                    let age = u64::try_from(age).unwrap_or(0);
                    let bucket = AGE_BUCKETS
                        .iter()
                        .position(|&bound| age <= bound)
                        .unwrap_or(AGE_BUCKETS.len());
                    add(&self.age_buckets[bucket]);
                    add(&self.age_count);
                    self.age_sum.fetch_add(age, Relaxed);
                }
            }
            Err(reason) => add(&self.requests[1 + reason.index()]),
        }
    }

    /// A re-authentication redirect.
    pub fn reauth(&self) {
        add(&self.reauth);
    }

    /// A session not resumed.
    pub fn refused(&self, why: Refusal) {
        add(&self.refused[why.index()]);
    }

    /// A token signed (not one reused).
    pub fn token_signed(&self, algorithm: Algorithm) {
        add(&self.tokens[algorithm.index()]);
    }

    pub fn forwarded(&self, result: ForwardedResult) {
        add(&self.forwarded[result.index()]);
    }

    /// The Prometheus text exposition (format 0.0.4) of the counters.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Relaxed);
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "nginx_auth_cert_requests_total",
            "counter",
            "Requests evaluated by auth_cert, by $auth_cert_status and $auth_cert_reason.",
        );
        let _ = writeln!(
            out,
            "nginx_auth_cert_requests_total{{status=\"ok\",reason=\"\"}} {}",
            get(&self.requests[0])
        );
        for (reason, counter) in Reason::ALL.iter().zip(&self.requests[1..]) {
            let _ = writeln!(
                out,
                "nginx_auth_cert_requests_total{{status=\"{}\",reason=\"{}\"}} {}",
                reason.status().as_str(),
                reason.as_str(),
                get(counter)
            );
        }
        family(
            &mut out,
            "nginx_auth_cert_reauth_total",
            "counter",
            "Re-authentication redirects.",
        );
        let _ = writeln!(out, "nginx_auth_cert_reauth_total {}", get(&self.reauth));
        family(
            &mut out,
            "nginx_auth_cert_resumption_refused_total",
            "counter",
            "TLS sessions not resumed, by reason.",
        );
        for (why, counter) in Refusal::ALL.iter().zip(&self.refused) {
            let _ = writeln!(
                out,
                "nginx_auth_cert_resumption_refused_total{{reason=\"{}\"}} {}",
                why.as_str(),
                get(counter)
            );
        }
        family(
            &mut out,
            "nginx_auth_cert_tokens_signed_total",
            "counter",
            "Tokens signed, by algorithm.",
        );
        for (alg, counter) in Algorithm::ALL.iter().zip(&self.tokens) {
            let _ = writeln!(
                out,
                "nginx_auth_cert_tokens_signed_total{{alg=\"{}\"}} {}",
                alg.name(),
                get(counter)
            );
        }
        family(
            &mut out,
            "nginx_auth_cert_forwarded_total",
            "counter",
            "Requests with a forwarded credential, by result.",
        );
        for (result, counter) in ForwardedResult::ALL.iter().zip(&self.forwarded) {
            let _ = writeln!(
                out,
                "nginx_auth_cert_forwarded_total{{result=\"{}\"}} {}",
                result.as_str(),
                get(counter)
            );
        }
        family(
            &mut out,
            "nginx_auth_cert_auth_age_seconds",
            "histogram",
            "Age of the authentication of accepted requests.",
        );
        let mut cumulative = 0;
        for (i, counter) in self.age_buckets.iter().enumerate() {
            cumulative += get(counter);
            let bound = AGE_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), u64::to_string);
            let _ = writeln!(
                out,
                "nginx_auth_cert_auth_age_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "nginx_auth_cert_auth_age_seconds_sum {}\nnginx_auth_cert_auth_age_seconds_count {}",
            get(&self.age_sum),
            get(&self.age_count)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn counts_and_renders() {
        let c = Counters::default();
        c.request(Ok(Some(5)));
        c.request(Ok(Some(4000)));
        c.request(Ok(None));
        c.request(Err(Reason::NoCert));
        c.request(Err(Reason::Eku));
        c.request(Err(Reason::Eku));
        c.reauth();
        c.refused(Refusal::Stale);
        c.token_signed(Algorithm::EdDsa);
        c.forwarded(ForwardedResult::Untrusted);
        let t = c.render();
        let v = |s| value(&t, s);
        assert_eq!(
            v("nginx_auth_cert_requests_total{status=\"ok\",reason=\"\"}"),
            3
        );
        assert_eq!(
            v("nginx_auth_cert_requests_total{status=\"none\",reason=\"no_cert\"}"),
            1
        );
        assert_eq!(
            v("nginx_auth_cert_requests_total{status=\"denied\",reason=\"eku\"}"),
            2
        );
        assert_eq!(
            v("nginx_auth_cert_requests_total{status=\"stale\",reason=\"stale\"}"),
            0
        );
        assert_eq!(v("nginx_auth_cert_reauth_total"), 1);
        assert_eq!(
            v("nginx_auth_cert_resumption_refused_total{reason=\"stale\"}"),
            1
        );
        assert_eq!(
            v("nginx_auth_cert_resumption_refused_total{reason=\"logout\"}"),
            0
        );
        assert_eq!(v("nginx_auth_cert_tokens_signed_total{alg=\"EdDSA\"}"), 1);
        assert_eq!(
            v("nginx_auth_cert_forwarded_total{result=\"untrusted\"}"),
            1
        );
        assert_eq!(v("nginx_auth_cert_auth_age_seconds_bucket{le=\"1\"}"), 0);
        assert_eq!(v("nginx_auth_cert_auth_age_seconds_bucket{le=\"10\"}"), 1);
        assert_eq!(v("nginx_auth_cert_auth_age_seconds_bucket{le=\"3600\"}"), 1);
        assert_eq!(v("nginx_auth_cert_auth_age_seconds_bucket{le=\"7200\"}"), 2);
        assert_eq!(v("nginx_auth_cert_auth_age_seconds_bucket{le=\"+Inf\"}"), 2);
        assert_eq!(v("nginx_auth_cert_auth_age_seconds_sum"), 4005);
        assert_eq!(v("nginx_auth_cert_auth_age_seconds_count"), 2);
    }

    #[test]
    fn forwarded_results() {
        use crate::decision::Credential;
        let credential = |source, outcome| {
            Forwarded::Evaluated(Credential {
                source,
                cert: None,
                outcome,
                detail: None,
            })
        };
        assert_eq!(ForwardedResult::of(&Forwarded::Nothing), None);
        assert_eq!(
            ForwardedResult::of(&Forwarded::Untrusted),
            Some(ForwardedResult::Untrusted)
        );
        assert_eq!(
            ForwardedResult::of(&credential(Source::Arg, Ok("x".into()))),
            Some(ForwardedResult::Arg)
        );
        assert_eq!(
            ForwardedResult::of(&credential(Source::Header, Ok("x".into()))),
            Some(ForwardedResult::Accepted)
        );
        assert_eq!(
            ForwardedResult::of(&credential(Source::Header, Err(Reason::Header))),
            Some(ForwardedResult::Rejected)
        );
    }

    #[test]
    fn every_list_holds_each_value_at_its_index() {
        for (i, x) in Refusal::ALL.iter().enumerate() {
            assert_eq!(x.index(), i, "{x:?}");
        }
        for (i, x) in ForwardedResult::ALL.iter().enumerate() {
            assert_eq!(x.index(), i, "{x:?}");
        }
        for (i, x) in Algorithm::ALL.iter().enumerate() {
            assert_eq!(x.index(), i, "{x:?}");
        }
    }

    #[test]
    fn each_label_is_counted_as_itself() {
        let c = Counters::default();
        c.refused(Refusal::Stepup);
        c.token_signed(Algorithm::Hs256);
        c.forwarded(ForwardedResult::Arg);
        let t = c.render();
        for (series, n) in [
            (
                "nginx_auth_cert_resumption_refused_total{reason=\"stepup\"}",
                1,
            ),
            (
                "nginx_auth_cert_resumption_refused_total{reason=\"stale\"}",
                0,
            ),
            ("nginx_auth_cert_tokens_signed_total{alg=\"HS256\"}", 1),
            ("nginx_auth_cert_tokens_signed_total{alg=\"ES256\"}", 0),
            ("nginx_auth_cert_forwarded_total{result=\"arg\"}", 1),
            ("nginx_auth_cert_forwarded_total{result=\"accepted\"}", 0),
        ] {
            assert_eq!(value(&t, series), n, "{series}");
        }
    }

    #[test]
    fn a_reason_is_counted_as_itself() {
        let c = Counters::default();
        c.request(Err(Reason::Revoked));
        let t = c.render();
        assert_eq!(
            value(
                &t,
                "nginx_auth_cert_requests_total{status=\"invalid\",reason=\"revoked\"}"
            ),
            1
        );
        assert_eq!(
            value(
                &t,
                "nginx_auth_cert_requests_total{status=\"none\",reason=\"no_cert\"}"
            ),
            0
        );
    }

    #[test]
    fn every_reason_has_a_counter_and_labels_are_fixed() {
        let c = Counters::default();
        for reason in Reason::ALL {
            c.request(Err(reason));
        }
        let t = c.render();
        for reason in Reason::ALL {
            let series = format!(
                "nginx_auth_cert_requests_total{{status=\"{}\",reason=\"{}\"}}",
                reason.status().as_str(),
                reason.as_str()
            );
            assert_eq!(value(&t, &series), 1);
        }
        // Every sample line is a known name, and every label value a fixed word.
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("nginx_auth_cert_"), "{line}");
            assert!(line.is_ascii() && !line.contains(['\\', '\n']), "{line}");
        }
    }
}
