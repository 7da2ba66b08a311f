//! Socket.IO sessions bound to their user. Engine.IO names a session by the `sid` its
//! handshake answers with, and every later polling request (and the WebSocket upgrade) only
//! names that `sid`: whoever learns it could read and write the session. In front of the
//! Socket.IO server, this guard records which user each handshake was for and refuses (`403`)
//! a request naming a session of another user, or one it does not know.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mesh::{
    auth::Identity,
    axum::{
        body::{Body, to_bytes},
        extract::{Request, State},
        middleware::Next,
        response::{IntoResponse, Response},
    },
    error::{ErrorKind, MeshError},
};

/// How long a session is remembered after its last request (a polling client asks again
/// within each ping interval; an upgraded one no longer names its `sid`).
const IDLE: Duration = Duration::from_secs(60);
/// The most sessions remembered: past it, the longest idle go first.
const MAX_SESSIONS: usize = 100_000;
/// The largest handshake answer read for its `sid`.
const MAX_HANDSHAKE_BYTES: usize = 4096;

/// Each session's user and when it was last used.
#[derive(Debug, Default)]
pub struct Sessions {
    owners: Mutex<HashMap<String, (String, Instant)>>,
}

impl Sessions {
    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, sid: String, user: String) {
        let mut owners = self.owners();
        let now = Instant::now();
        owners.retain(|_, (_, seen)| now.duration_since(*seen) < IDLE);
        if owners.len() >= MAX_SESSIONS
            && let Some(oldest) = owners
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(sid, _)| sid.clone())
        {
            owners.remove(&oldest);
        }
        owners.insert(sid, (user, now));
    }

    /// Whether `sid` is `user`'s session (and it is used now).
    fn owned_by(&self, sid: &str, user: &str) -> bool {
        match self.owners().get_mut(sid) {
            Some((owner, seen)) if owner == user => {
                *seen = Instant::now();
                true
            }
            _ => false,
        }
    }
}

/// The value of `name` in a query string.
fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The `sid` of a polling handshake's answer: `0{"sid":"…",…}`.
fn handshake_sid(body: &[u8]) -> Option<String> {
    let open: serde_json::Value = serde_json::from_slice(body.strip_prefix(b"0")?).ok()?;
    open["sid"].as_str().map(str::to_owned)
}

fn refused(message: &str) -> Response {
    MeshError::new(ErrorKind::Forbidden, message).into_response()
}

/// The guard, as an axum middleware in front of the Socket.IO server.
pub async fn guard(
    State(sessions): State<Arc<Sessions>>,
    request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with("/socket.io") {
        return next.run(request).await;
    }
    let Some(user) = request
        .extensions()
        .get::<Identity>()
        .map(|identity| identity.subject.clone())
    else {
        return MeshError::new(ErrorKind::Unauthorized, "a bearer token is required")
            .into_response();
    };
    let query = request.uri().query().unwrap_or_default();
    if let Some(sid) = query_value(query, "sid") {
        if !sessions.owned_by(sid, &user) {
            return refused("this Socket.IO session is not yours");
        }
        return next.run(request).await;
    }
    let polling = query_value(query, "transport") == Some("polling");
    let answer = next.run(request).await;
    if !polling || !answer.status().is_success() {
        return answer;
    }
    // A polling handshake: its answer names the new session.
    let (parts, body) = answer.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_HANDSHAKE_BYTES).await else {
        return refused("the Socket.IO handshake could not be read");
    };
    match handshake_sid(&bytes) {
        Some(sid) => sessions.remember(sid, user),
        None => return refused("the Socket.IO handshake named no session"),
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_its_users_only() {
        let sessions = Sessions::default();
        sessions.remember("s1".into(), "alice".into());
        assert!(sessions.owned_by("s1", "alice"));
        assert!(!sessions.owned_by("s1", "bob"));
        assert!(!sessions.owned_by("s2", "alice"));
    }

    #[test]
    fn the_handshake_names_the_session() {
        let body =
            br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":5000}"#;
        assert_eq!(handshake_sid(body).as_deref(), Some("lv_VI97HAXpY6yYWAAAC"));
        assert_eq!(handshake_sid(b"40"), None);
        assert_eq!(
            query_value("EIO=4&transport=polling&sid=abc", "sid"),
            Some("abc")
        );
        assert_eq!(query_value("EIO=4&transport=polling", "sid"), None);
    }
}
