//! OAuth2 client-credentials tokens, shared by every org a key acts for.
//!
//! An MSSP parent key polls dozens of child orgs; the token endpoint allows about 20 requests
//! a minute per key. So tokens live in a [`TokenCache`] keyed by (token URL, key), shared by
//! every client of that key: one token serves all its orgs until shortly before it expires,
//! and callers that find it missing or stale at the same moment wait on a single refresh
//! (a `tokio` mutex per key) instead of each asking for one.

use secrecy::SecretString;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lifetime assumed when the token endpoint does not say (`expires_in` missing).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The most a token is refreshed ahead of its expiry; shorter lifetimes are refreshed a tenth
/// of their lifetime ahead.
pub const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// A token as the token endpoint gave it.
#[derive(Debug)]
pub struct IssuedToken {
    pub access_token: SecretString,
    /// `expires_in`, or [`DEFAULT_TOKEN_LIFETIME`] when absent.
    pub expires_in: Duration,
}

/// Reads a token answer: `{"token_type":"bearer","access_token":"...","expires_in":3600}`
/// (`expires_in` as a number or a string of digits; `token_type` is not checked, any token is
/// sent as `Bearer`).
pub fn parse_token(body: &[u8]) -> Result<IssuedToken, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "the answer is not a JSON object".to_string())?;
    let token = obj
        .get("access_token")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "`access_token` is missing or empty".to_string())?;
    let expires_in = match obj.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_TOKEN_LIFETIME,
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`expires_in` {n} is not a number of seconds"))?,
        Some(Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("`expires_in` {s:?} is not a number of seconds"))?,
        Some(other) => return Err(format!("`expires_in` {other} is not a number of seconds")),
    };
    Ok(IssuedToken {
        access_token: SecretString::from(token.to_string()),
        expires_in,
    })
}

/// How far ahead of expiry a token of this lifetime is refreshed.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(MAX_REFRESH_MARGIN)
}

struct Cached {
    token: SecretString,
    refresh_at: Instant,
    generation: u64,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

#[derive(Default)]
struct Inner {
    slots: Mutex<HashMap<(String, String), Slot>>,
    generations: AtomicU64,
}

/// Tokens per (token URL, key), shared by every org and every client of a key. Cheap to
/// clone: clones share the cache.
#[derive(Clone, Default)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.inner.slots.lock().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("TokenCache").field("keys", &keys).finish()
    }
}

/// A token handed to a caller, with what is needed to drop exactly that token later.
#[derive(Clone)]
pub(crate) struct Lease {
    pub(crate) token: SecretString,
    pub(crate) generation: u64,
    /// Obtained from the token endpoint by this very call (not from the cache).
    pub(crate) fresh: bool,
}

impl TokenCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&self, token_url: &str, key: &str) -> Slot {
        // A poisoned map only means another thread panicked while inserting; the map itself
        // is still a valid map.
        let mut slots = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slots
            .entry((token_url.to_string(), key.to_string()))
            .or_default()
            .clone()
    }

    /// The cached token of (token URL, key) if it is not due for refresh, else the one `fetch`
    /// obtains. Concurrent callers of the same key wait for one `fetch`.
    pub(crate) async fn get<E, F, Fut>(
        &self,
        token_url: &str,
        key: &str,
        fetch: F,
    ) -> Result<Lease, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<IssuedToken, E>>,
    {
        let slot = self.slot(token_url, key);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(Lease {
                token: c.token.clone(),
                generation: c.generation,
                fresh: false,
            });
        }
        *cached = None;
        let issued = fetch().await?;
        let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let usable_for = issued
            .expires_in
            .saturating_sub(refresh_margin(issued.expires_in));
        *cached = Some(Cached {
            token: issued.access_token.clone(),
            refresh_at: Instant::now() + usable_for,
            generation,
        });
        Ok(Lease {
            token: issued.access_token,
            generation,
            fresh: true,
        })
    }

    /// Drops the token of that generation (refused by the API), unless another caller has
    /// already replaced it with a newer one.
    pub(crate) async fn invalidate(&self, token_url: &str, key: &str, generation: u64) {
        let slot = self.slot(token_url, key);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|c| c.generation == generation) {
            *cached = None;
        }
    }

    /// Forgets every token (e.g. after a key rotation).
    pub fn clear(&self) {
        if let Ok(mut slots) = self.inner.slots.lock() {
            slots.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn token_answers() {
        let t =
            parse_token(br#"{"token_type":"bearer","access_token":"123456","expires_in":3600}"#)
                .expect("token");
        assert_eq!(t.access_token.expose_secret(), "123456");
        assert_eq!(t.expires_in, Duration::from_secs(3600));
        let t = parse_token(br#"{"access_token":"a","expires_in":"120"}"#).expect("token");
        assert_eq!(t.expires_in, Duration::from_secs(120));
        assert_eq!(
            parse_token(br#"{"access_token":"a"}"#)
                .expect("token")
                .expires_in,
            DEFAULT_TOKEN_LIFETIME
        );
        assert!(parse_token(br#"{"access_token":""}"#).is_err());
        assert!(parse_token(br#"{"message":"Unauthorized"}"#).is_err());
        assert!(parse_token(b"[]").is_err());
    }

    #[test]
    fn margins() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(100)),
            Duration::from_secs(10)
        );
    }

    #[tokio::test]
    async fn one_fetch_for_concurrent_callers_and_invalidate_by_generation() {
        let cache = TokenCache::new();
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get("u", "k", || async move {
                        let n = fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(IssuedToken {
                            access_token: SecretString::from(format!("t{n}")),
                            expires_in: Duration::from_secs(3600),
                        })
                    })
                    .await
                    .map(|l| l.generation)
            }));
        }
        let mut generations = Vec::new();
        for t in tasks {
            generations.push(t.await.expect("task").expect("token"));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert!(generations.iter().all(|g| *g == generations[0]));

        // A stale generation does not drop the current token; the current one does.
        cache.invalidate("u", "k", generations[0] + 99).await;
        let again = cache
            .get("u", "k", || async { Err::<IssuedToken, ()>(()) })
            .await
            .expect("still cached");
        assert!(!again.fresh);
        cache.invalidate("u", "k", again.generation).await;
        assert!(
            cache
                .get("u", "k", || async { Err::<IssuedToken, ()>(()) })
                .await
                .is_err()
        );
        // Another key of the same URL is another token.
        let other = cache
            .get("u", "k2", || async {
                Ok::<_, ()>(IssuedToken {
                    access_token: SecretString::from("x".to_string()),
                    expires_in: Duration::from_secs(10),
                })
            })
            .await
            .expect("token");
        assert!(other.fresh);
    }
}
