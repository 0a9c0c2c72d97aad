//! Key names. Every key starts with `{<namespace>}:`; the braces make the namespace a Redis
//! Cluster hash tag, so all of a namespace's keys live in one slot and one Lua script may touch
//! read models and queue keys together (the scripts build per-job and per-request key names from
//! that prefix).

use herald_core::StateError;
use herald_domain::Status;

/// The fixed keys of one namespace, computed once.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `{ns}:` — the scripts append `mr:<id>` and `idx:…` to it.
    pub prefix: String,
    pub lease: String,
    pub lease_counter: String,
    pub checkpoint: String,
    pub versions: String,
    pub layout: String,
    pub wait: String,
    pub delayed: String,
    pub active: String,
    pub dead: String,
    pub finished: String,
    pub seen: String,
    pub job: String,
    pub leases: String,
    pub errors: String,
    pub counts: String,
    pub seq: String,
    pub wake: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Result<Keys, StateError> {
        validate_namespace(namespace)?;
        let prefix = format!("{{{namespace}}}:");
        let k = |s: &str| format!("{prefix}{s}");
        Ok(Keys {
            lease: k("projector:lease"),
            lease_counter: k("projector:tokens"),
            checkpoint: k("projector:checkpoint"),
            versions: k("projector:versions"),
            layout: k("layout"),
            wait: k("q:wait"),
            delayed: k("q:delayed"),
            active: k("q:active"),
            dead: k("q:dead"),
            finished: k("q:finished"),
            seen: k("q:seen"),
            job: k("q:job"),
            leases: k("q:lease"),
            errors: k("q:error"),
            counts: k("q:counts"),
            seq: k("q:seq"),
            wake: k("q:wake"),
            prefix,
        })
    }

    pub fn request(&self, id: &str) -> String {
        format!("{}mr:{id}", self.prefix)
    }

    /// The index of one status, for one tenant or (`None`) for all of them. There is no
    /// all-tenants index of the [`hot`] statuses.
    pub fn index(&self, tenant: Option<&str>, status: Status) -> String {
        match tenant {
            Some(t) => self.segment_index(&tenant_segment(t), status),
            None => format!("{}idx:*:{}", self.prefix, status.as_str()),
        }
    }

    /// The index of one status for a tenant given by its key segment (as the tenants set holds it).
    pub fn segment_index(&self, segment: &str, status: Status) -> String {
        format!("{}idx:{segment}:{}", self.prefix, status.as_str())
    }

    /// Requests per status across all tenants (hash: status → count).
    pub fn status_counts(&self) -> String {
        format!("{}idx:counts", self.prefix)
    }

    /// The key segments of every tenant with a request (set).
    pub fn tenants(&self) -> String {
        format!("{}idx:tenants", self.prefix)
    }

    /// SCAN patterns of the read-model keys (`reset_projections`). The namespace holds no glob
    /// characters (see [`validate_namespace`]), so the prefix needs no escaping.
    pub fn projection_patterns(&self) -> [String; 2] {
        [
            format!("{}mr:*", self.prefix),
            format!("{}idx:*", self.prefix),
        ]
    }
}

/// Statuses every request passes through (`HOT` in apply.lua): they have no all-tenants index,
/// the largest sorted sets there would be, each touched twice per request. Across tenants they
/// are counted in the counts hash and listed by merging the tenants' own indexes.
pub(crate) fn hot(status: Status) -> bool {
    matches!(status, Status::Pending | Status::Sent)
}

/// A tenant as it appears inside a key. Tenants are free text, so every byte outside a small safe
/// set is percent-encoded: a tenant can then never contain the `:` that separates key parts, nor
/// be the `*` that names the all-tenants index, and the mapping stays one-to-one (`%` itself is
/// encoded). Ordinary tenant names stay readable.
pub(crate) fn tenant_segment(tenant: &str) -> String {
    let mut out = String::with_capacity(tenant.len());
    for b in tenant.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A namespace becomes a hash tag and part of SCAN patterns: braces would break the tag and glob
/// characters the patterns, so they are refused rather than escaped.
fn validate_namespace(ns: &str) -> Result<(), StateError> {
    let bad = |c: char| {
        c.is_whitespace() || c.is_control() || matches!(c, '{' | '}' | '*' | '?' | '[' | ']' | '\\')
    };
    if ns.is_empty() || ns.chars().any(bad) {
        return Err(StateError::Data(format!(
            "invalid Redis namespace {ns:?}: it must be non-empty, without spaces, braces or glob characters (*?[]\\)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_cannot_break_the_layout() {
        assert_eq!(tenant_segment("acme"), "acme");
        assert_eq!(tenant_segment("a:b*"), "a%3Ab%2A");
        assert_eq!(tenant_segment("*"), "%2A");
        assert_ne!(tenant_segment("a%3A"), tenant_segment("a:"));
        let k = Keys::new("herald").unwrap();
        assert_eq!(k.index(Some("x"), Status::Sent), "{herald}:idx:x:SENT");
        assert_eq!(k.index(None, Status::Sent), "{herald}:idx:*:SENT");
        assert_ne!(
            k.index(Some("*"), Status::Sent),
            k.index(None, Status::Sent)
        );
    }

    #[test]
    fn namespaces_are_checked() {
        assert!(Keys::new("test-1").is_ok());
        for bad in ["", "a}b", "a{b", "a*", "a b"] {
            assert!(Keys::new(bad).is_err(), "{bad:?}");
        }
    }
}
