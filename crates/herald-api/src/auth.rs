//! Bearer API keys. The configuration holds only the SHA-256 of each key: a leaked config file
//! does not leak keys, and comparing fixed-size digests in constant time is simple. The presented
//! key is hashed and compared with every tenant's digest (and the admin's) using
//! [`subtle::ConstantTimeEq`], without stopping at the first match, so timing tells nothing
//! about how much of a key was right.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ApiState;
use crate::error::ApiError;

/// The SHA-256 of an API key, as [`crate::ApiTenant::api_key_sha256`] stores it.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Who is calling: a tenant (by id) or an operator holding the admin key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Tenant(String),
    Admin,
}

impl Caller {
    /// The tenant to scope reads and writes to; `None` for the admin (every tenant).
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Caller::Tenant(t) => Some(t),
            Caller::Admin => None,
        }
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let key = bearer_key(parts)?;
        let digest = hash_key(key);
        let mut tenant: Option<&str> = None;
        for t in &state.config.tenants {
            if bool::from(t.api_key_sha256.ct_eq(&digest)) {
                tenant = Some(&t.id);
            }
        }
        let admin = state
            .config
            .admin_key_sha256
            .is_some_and(|a| bool::from(a.ct_eq(&digest)));
        let caller = match (tenant, admin) {
            (Some(t), _) => Caller::Tenant(t.to_owned()),
            (None, true) => Caller::Admin,
            (None, false) => {
                tracing::info!("request with an unknown API key");
                return Err(ApiError::unauthorized("the API key is not valid"));
            }
        };
        let who = caller.tenant().unwrap_or("(admin)");
        tracing::Span::current().record("tenant", who);
        Ok(caller)
    }
}

/// A caller that must be a tenant: the message-request endpoints act on one tenant's data, and
/// the admin key has no tenant to act as (403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub String);

impl FromRequestParts<ApiState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Tenant(t) => Ok(Tenant(t)),
            Caller::Admin => Err(ApiError::forbidden(
                "this endpoint needs a tenant API key; the admin key only reads the queue and manages dead letters",
            )),
        }
    }
}

/// The key from `Authorization: Bearer <key>` (scheme case-insensitive, RFC 7235).
fn bearer_key(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("send an API key: Authorization: Bearer <key>"))?;
    let value = value.to_str().map_err(|_| {
        ApiError::unauthorized("the Authorization header must be `Bearer <key>` in ASCII")
    })?;
    let (scheme, key) = value.trim().split_once(' ').unwrap_or((value, ""));
    let key = key.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() {
        return Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer <key>`",
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_key_is_sha256() {
        // echo -n herald | sha256sum
        assert_eq!(
            hex::encode(hash_key("herald")),
            hex::encode(Sha256::digest(b"herald"))
        );
        assert_ne!(hash_key("a"), hash_key("b"));
    }

    #[test]
    fn bearer_parsing() {
        let parts = |v: Option<&str>| {
            let mut b = axum::http::Request::builder();
            if let Some(v) = v {
                b = b.header(header::AUTHORIZATION, v);
            }
            b.body(()).unwrap().into_parts().0
        };
        assert_eq!(bearer_key(&parts(Some("Bearer k1"))).unwrap(), "k1");
        assert_eq!(bearer_key(&parts(Some("bearer   k1 "))).unwrap(), "k1");
        for bad in [
            None,
            Some("Basic abc"),
            Some("Bearer"),
            Some("Bearer "),
            Some("k1"),
        ] {
            let e = bearer_key(&parts(bad)).unwrap_err();
            assert_eq!(e.code, "unauthorized", "{bad:?}");
        }
    }
}
