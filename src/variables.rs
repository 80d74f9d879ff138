//! `$auth_cert_*` variables.

use ngx::ffi::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_int_t, ngx_str_t, ngx_uint_t,
    ngx_variable_value_t, NGX_ERROR, NGX_HTTP_VAR_NOCACHEABLE, NGX_OK,
};
use ngx::http::Request;

use crate::age::Decimal;
use crate::cert::CertificateInfo;
use crate::handler::{self, RequestAuth};

/// Reads one variable's value out of a request's evaluation.
type Getter = fn(&RequestAuth) -> &str;

/// The variables, by name; the index is the `data` of the getter.
const VARIABLES: [(&str, Getter); 13] = [
    ("auth_cert_status", |a| match &a.outcome {
        Ok(_) => "ok",
        Err(reason) => reason.status().as_str(),
    }),
    ("auth_cert_reason", |a| match &a.outcome {
        Ok(_) => "",
        Err(reason) => reason.as_str(),
    }),
    ("auth_cert_identity", |a| a.outcome.as_deref().unwrap_or("")),
    ("auth_cert_subject", |a| {
        trusted(a).map_or("", CertificateInfo::subject)
    }),
    ("auth_cert_issuer", |a| {
        trusted(a).map_or("", CertificateInfo::issuer)
    }),
    ("auth_cert_serial", |a| {
        trusted(a).map_or("", CertificateInfo::serial)
    }),
    ("auth_cert_fingerprint", |a| {
        trusted(a).map_or("", CertificateInfo::fingerprint)
    }),
    ("auth_cert_email", |a| {
        trusted(a).and_then(|c| c.email()).unwrap_or("")
    }),
    ("auth_cert_upn", |a| {
        trusted(a).and_then(|c| c.upn()).unwrap_or("")
    }),
    ("auth_cert_not_after", |a| {
        a.not_after_text
            .get_or_init(|| decimal(trusted(a).map(|c| c.not_after)))
            .as_str()
    }),
    ("auth_cert_source", |a| a.source.map_or("", |s| s.as_str())),
    ("auth_cert_auth_time", |a| {
        a.auth_time_text
            .get_or_init(|| decimal(a.auth_time))
            .as_str()
    }),
    ("auth_cert_age", |a| {
        a.age_text.get_or_init(|| decimal(a.age)).as_str()
    }),
];

/// A number for a variable; empty when unknown.
fn decimal(value: Option<i64>) -> Decimal {
    value.map(Decimal::new).unwrap_or_default()
}

/// The certificate's facts, when its chain verified.
fn trusted(auth: &RequestAuth) -> Option<&CertificateInfo> {
    auth.cert.as_deref().filter(|_| auth.trusted)
}

/// Registers the variables; called from preconfiguration.
///
/// # Safety
/// `cf` must be the configuration being parsed.
pub unsafe fn add(cf: *mut ngx_conf_t) -> bool {
    for (index, (name, _)) in VARIABLES.iter().enumerate() {
        let mut name = ngx_str_t {
            len: name.len(),
            data: name.as_ptr().cast_mut(),
        };
        // SAFETY: nginx copies the name into the configuration pool; a null result means
        // allocation failure or a conflicting definition, already logged.
        let var =
            unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t) };
        // SAFETY: non-null results point to the variable nginx keeps for the name.
        let Some(var) = (unsafe { var.as_mut() }) else {
            return false;
        };
        var.get_handler = Some(get);
        var.data = index;
    }
    true
}

unsafe extern "C" fn get(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls variable getters with a valid request and value slot.
    let (request, v) = unsafe { (Request::from_ngx_http_request(r), &mut *v) };
    let (Some(auth), Some((_, value_of))) = (handler::evaluate(request), VARIABLES.get(data))
    else {
        return NGX_ERROR as ngx_int_t;
    };
    // The value lives in the request's evaluation, which the request pool keeps alive.
    let value = value_of(auth);
    v.set_len(value.len() as u32);
    v.set_valid(1);
    v.set_no_cacheable(0);
    v.set_not_found(0);
    v.data = value.as_ptr().cast_mut();
    NGX_OK as ngx_int_t
}
