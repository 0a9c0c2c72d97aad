//! The Lua scripts. Every state change that touches more than one key is one script, so it is
//! atomic; `redis::Script` runs them by SHA and loads them again when Redis answers NOSCRIPT
//! (after a restart or SCRIPT FLUSH).

use redis::Script;

const COMMON: &str = include_str!("lua/common.lua");

pub(crate) struct Scripts {
    pub apply: Script,
    pub enqueue: Script,
    pub reserve: Script,
    pub complete: Script,
    pub fail: Script,
    pub extend: Script,
    pub release: Script,
    pub lease_acquire: Script,
    pub lease_release: Script,
    pub fenced_del: Script,
}

/// A queue script: the shared helpers, then its body.
fn with_common(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            apply: with_common(include_str!("lua/apply.lua")),
            enqueue: with_common(include_str!("lua/enqueue.lua")),
            reserve: with_common(include_str!("lua/reserve.lua")),
            complete: with_common(include_str!("lua/complete.lua")),
            fail: with_common(include_str!("lua/fail.lua")),
            extend: with_common(include_str!("lua/extend.lua")),
            release: with_common(include_str!("lua/release.lua")),
            lease_acquire: Script::new(include_str!("lua/lease_acquire.lua")),
            lease_release: Script::new(include_str!("lua/lease_release.lua")),
            fenced_del: Script::new(include_str!("lua/fenced_del.lua")),
        }
    }
}
