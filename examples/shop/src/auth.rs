//! The auth service: signup, login (an access token and a refresh token), refresh with
//! rotation and reuse detection, logout, and the JWKS every verifier reads. Built on
//! `mesh::auth`; the gateway turns the login's token into an HttpOnly cookie.

use std::{sync::Arc, time::Duration};

use mesh::{
    Mesh,
    auth::{Grant, IssuerSettings, Passwords, RefreshTokens, TokenIssuer},
    axum::{Json, Router, extract::State, http::StatusCode, routing::post},
    error::{ErrorKind, MeshError},
};
use serde::{Deserialize, Serialize};

use crate::store::{Store, Table};

/// The issuer every verifier in the shop expects.
pub const ISSUER: &str = "auth-service";
/// The audience every verifier in the shop expects.
pub const AUDIENCE: &str = "shop";

/// A user as stored: the name, the Argon2id hash, the roles.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    hash: String,
    roles: Vec<String>,
}

/// What signup and login take.
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// A login's or a refresh's answer, in OAuth's shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tokens {
    /// The access token (a JWT); the gateway also reads it as `token`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The refresh token: good for one refresh.
    pub refresh_token: String,
}

/// What refresh and logout take.
#[derive(Debug, Clone, Deserialize)]
pub struct RefreshRequest {
    /// The refresh token.
    pub refresh_token: String,
}

/// The auth service's state.
#[derive(Debug, Clone)]
pub struct Auth {
    users: Arc<Table<User>>,
    issuer: TokenIssuer,
    refresh: RefreshTokens,
    passwords: Passwords,
}

impl Auth {
    /// The service, its users in `store`, its refresh tokens where `mesh` keeps them (Redis
    /// with `redis.url`), with an `admin` whose password is `admin_password`.
    pub async fn new(mesh: &Mesh, store: &Store, admin_password: &str) -> Result<Self, MeshError> {
        let issuer = TokenIssuer::new(
            IssuerSettings::new(ISSUER)
                .audience(AUDIENCE)
                .token_ttl(Duration::from_secs(15 * 60)),
        )?;
        let refresh = RefreshTokens::new(mesh.refresh_store()?, Duration::from_secs(7 * 86_400));
        let auth = Self {
            users: Arc::new(store.table("auth-service", "users")),
            issuer,
            refresh,
            passwords: Passwords::new()?,
        };
        let hash = auth.passwords.hash(admin_password).await?;
        auth.users
            .put(
                "admin",
                User {
                    hash,
                    roles: vec!["admin".into(), "customer".into()],
                },
            )
            .await?;
        Ok(auth)
    }

    /// Signs a new key in; the old one verifies until its tokens expire.
    pub fn rotate_keys(&self) -> Result<String, MeshError> {
        self.issuer.rotate()
    }

    /// The service's routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/auth/signup", post(signup))
            .route("/auth/login", post(login))
            .route("/auth/refresh", post(refresh))
            .route("/auth/logout", post(logout))
            .with_state(self.clone())
            .merge(self.issuer.jwks_router())
    }

    fn tokens(&self, grant: &Grant, refresh_token: String) -> Result<Tokens, MeshError> {
        let access = self.issuer.issue(&grant.subject, &grant.roles)?;
        Ok(Tokens {
            access_token: access.token,
            token_type: "Bearer".into(),
            expires_in: access.expires_in,
            refresh_token,
        })
    }
}

/// Whether `credentials` may open an account: a user name of 3 to 32 letters, digits, `-`,
/// `_` or `.`, and a password of at least 8 bytes (`400` otherwise).
pub fn check_new_account(credentials: &Credentials) -> Result<(), MeshError> {
    let name = &credentials.username;
    let valid_name = (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid_name {
        return Err(MeshError::new(
            ErrorKind::BadRequest,
            "a user name is 3 to 32 letters, digits, `-`, `_` or `.`",
        ));
    }
    if credentials.password.len() < 8 {
        return Err(MeshError::new(
            ErrorKind::BadRequest,
            "a password is at least 8 bytes",
        ));
    }
    Ok(())
}

async fn signup(
    State(auth): State<Auth>,
    Json(credentials): Json<Credentials>,
) -> Result<(StatusCode, Json<serde_json::Value>), MeshError> {
    check_new_account(&credentials)?;
    let hash = auth.passwords.hash(&credentials.password).await?;
    let user = User {
        hash,
        roles: vec!["customer".into()],
    };
    if !auth.users.insert_new(&credentials.username, user).await? {
        return Err(MeshError::custom(
            StatusCode::CONFLICT,
            "user_exists",
            "that user name is taken",
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"username": credentials.username, "roles": ["customer"]})),
    ))
}

/// The same answer, in the same time, for an unknown user and a wrong password.
async fn login(
    State(auth): State<Auth>,
    Json(credentials): Json<Credentials>,
) -> Result<Json<Tokens>, MeshError> {
    let user = auth.users.get(&credentials.username).await?;
    let stored = user.as_ref().map(|user| user.hash.as_str());
    if !auth.passwords.verify(stored, &credentials.password).await {
        return Err(MeshError::new(
            ErrorKind::Unauthorized,
            "wrong user name or password",
        ));
    }
    let roles = user.map(|user| user.roles).unwrap_or_default();
    let grant = Grant::new(credentials.username, roles);
    let refresh_token = auth.refresh.start(grant.clone()).await?;
    Ok(Json(auth.tokens(&grant, refresh_token)?))
}

async fn refresh(
    State(auth): State<Auth>,
    Json(request): Json<RefreshRequest>,
) -> Result<Json<Tokens>, MeshError> {
    let (next, grant) = auth.refresh.rotate(&request.refresh_token).await?;
    Ok(Json(auth.tokens(&grant, next)?))
}

async fn logout(
    State(auth): State<Auth>,
    Json(request): Json<RefreshRequest>,
) -> Result<Json<serde_json::Value>, MeshError> {
    auth.refresh.revoke(&request.refresh_token).await?;
    Ok(Json(serde_json::json!({"logged_out": true})))
}
