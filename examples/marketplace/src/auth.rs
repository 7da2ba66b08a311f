//! The auth service: signup and login, the only place tokens are made. A login's token is
//! turned by the gateway into an HttpOnly cookie and kept from the client's scripts
//! (`auth.cookie_only`); every other request carries it from that cookie. Signup tells the
//! others with `user.signed-up`.

use std::{sync::Arc, time::Duration};

use mesh::{
    Mesh,
    auth::{IssuerSettings, Passwords, TokenIssuer, random_token},
    axum::{Json, Router, extract::State, http::StatusCode, routing::post},
    bus::Bus,
    error::{ErrorKind, MeshError},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shop::{
    auth::{Credentials, check_new_account},
    store::{Store, Table},
};

use crate::{api::UserSignedUp, events::publish};

/// The issuer every verifier in the marketplace expects.
pub const ISSUER: &str = "auth-service";
/// The audience every verifier in the marketplace expects.
pub const AUDIENCE: &str = "marketplace";
/// The role every user has: buyers and sellers are the same users.
pub const USER_ROLE: &str = "user";

/// A user's credentials as stored: the Argon2id hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Account {
    hash: String,
}

/// The auth service's state.
#[derive(Debug, Clone)]
pub struct Auth {
    accounts: Arc<Table<Account>>,
    issuer: TokenIssuer,
    passwords: Passwords,
    bus: Arc<dyn Bus>,
}

impl Auth {
    /// The service on `mesh`, its accounts in `store`.
    pub async fn new(mesh: &Mesh, store: &Store) -> Result<Self, MeshError> {
        let issuer = TokenIssuer::new(
            IssuerSettings::new(ISSUER)
                .audience(AUDIENCE)
                .token_ttl(Duration::from_secs(60 * 60)),
        )?;
        Ok(Self {
            accounts: Arc::new(store.table("auth-service", "accounts")),
            issuer,
            passwords: Passwords::new()?,
            bus: mesh.bus().await?,
        })
    }

    /// The service's routes, and the JWKS every verifier reads.
    pub fn router(self) -> Router {
        Router::new()
            .route("/auth/signup", post(signup))
            .route("/auth/login", post(login))
            .route("/auth/logout", post(logout))
            .with_state(self.clone())
            .merge(self.issuer.jwks_router())
    }
}

async fn signup(
    State(auth): State<Auth>,
    Json(credentials): Json<Credentials>,
) -> Result<(StatusCode, Json<Value>), MeshError> {
    check_new_account(&credentials)?;
    let hash = auth.passwords.hash(&credentials.password).await?;
    if !auth
        .accounts
        .insert_new(&credentials.username, Account { hash })
        .await?
    {
        return Err(MeshError::custom(
            StatusCode::CONFLICT,
            "user_exists",
            "that user name is taken",
        ));
    }
    let user = &credentials.username;
    let signed_up = UserSignedUp {
        username: user.clone(),
    };
    // Its own ID: consumers remember the events they handled (in Redis, across deployments
    // sharing it), and a name is not an occurrence.
    let key = format!("{user}/{}", random_token(8)?);
    publish(&auth.bus, "auth-service", &key, user, &signed_up).await?;
    Ok((StatusCode::CREATED, Json(json!({"username": user}))))
}

/// The same answer, in the same time, for an unknown user and a wrong password.
async fn login(
    State(auth): State<Auth>,
    Json(credentials): Json<Credentials>,
) -> Result<Json<Value>, MeshError> {
    let account = auth.accounts.get(&credentials.username).await?;
    let stored = account.as_ref().map(|account| account.hash.as_str());
    if !auth.passwords.verify(stored, &credentials.password).await {
        return Err(MeshError::new(
            ErrorKind::Unauthorized,
            "wrong user name or password",
        ));
    }
    let token = auth
        .issuer
        .issue(&credentials.username, &[USER_ROLE.to_owned()])?;
    Ok(Json(json!({
        "username": credentials.username,
        "access_token": token.token,
        "expires_in": token.expires_in,
    })))
}

/// Nothing to forget here: the gateway clears its cookie.
async fn logout() -> Json<Value> {
    Json(json!({"loggedOut": true}))
}
