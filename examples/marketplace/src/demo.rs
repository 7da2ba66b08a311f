//! The scripted scenario, through the gateway only, as a browser would: each user holds the
//! gateway's HttpOnly cookie and nothing else. Each step says what it shows and checks that the
//! marketplace behaved; the last ones send a user's valid token to each service directly and
//! see it refused.

use std::{net::SocketAddr, time::Duration};

use mesh::axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};
use shop::demo::{Answer, ShopClient, expect, shown, step};

use crate::Marketplace;

/// The cookie the gateway keeps the token in.
const COOKIE: &str = "mesh_token";

/// A browser of the marketplace: its cookie jar holds the gateway's cookie.
#[derive(Debug, Clone)]
pub struct Browser {
    client: ShopClient,
    user: String,
    cookie: Option<String>,
}

impl Browser {
    /// A browser at the gateway `gateway`, for `user`, not logged in.
    pub fn new(gateway: SocketAddr, user: &str) -> Self {
        Self {
            client: ShopClient::new(gateway),
            user: user.to_owned(),
            cookie: None,
        }
    }

    /// The token the cookie holds (what a script in the page can't read; the tests can).
    pub fn token(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// `method path` with the cookie, and `body` as JSON.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, String> {
        let cookie = self
            .cookie
            .as_ref()
            .map(|token| format!("{COOKIE}={token}"));
        let headers: Vec<(&str, &str)> = cookie
            .iter()
            .map(|cookie| ("cookie", cookie.as_str()))
            .collect();
        let answer = self.client.send(method, path, &headers, body).await?;
        // The jar keeps what the gateway sets, and forgets what it clears.
        for set in answer.headers.get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap_or_default();
            if let Some(value) = set
                .split(';')
                .next()
                .and_then(|pair| pair.trim().strip_prefix(&format!("{COOKIE}=")))
            {
                self.cookie = (!value.is_empty()).then(|| value.to_owned());
            }
        }
        Ok(answer)
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<Answer, String> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with `body`.
    pub async fn post(&mut self, path: &str, body: Value) -> Result<Answer, String> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Signs up and logs in with `password`; the login's answer.
    pub async fn sign_up(&mut self, password: &str) -> Result<Answer, String> {
        let credentials = json!({"username": self.user, "password": password});
        let signup = self.post("/api/auth/signup", credentials.clone()).await?;
        expect(signup.status == StatusCode::CREATED, || {
            format!("signup of {}: {} {}", self.user, signup.status, signup.body)
        })?;
        let login = self.post("/api/auth/login", credentials).await?;
        expect(login.status == StatusCode::OK, || {
            format!("login of {}: {} {}", self.user, login.status, login.body)
        })?;
        Ok(login)
    }

    /// Polls `GET path` until `done` holds for its answer (events arrive asynchronously).
    pub async fn eventually(
        &mut self,
        path: &str,
        what: &str,
        done: impl Fn(&Answer) -> bool,
    ) -> Result<Answer, String> {
        for _ in 0..100 {
            let answer = self.get(path).await?;
            if done(&answer) {
                return Ok(answer);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("{}: {what} within 5 s", self.user))
    }

    /// Waits for a notification containing `text`.
    pub async fn notified(&mut self, text: &str) -> Result<String, String> {
        let answer = self
            .eventually("/api/notifications", &format!("no `{text}`"), |inbox| {
                texts(inbox).any(|said| said.contains(text))
            })
            .await?;
        Ok(texts(&answer)
            .find(|said| said.contains(text))
            .unwrap_or_default()
            .to_owned())
    }
}

/// The texts of a notifications answer.
fn texts(inbox: &Answer) -> impl Iterator<Item = &str> {
    inbox
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["text"].as_str())
}

/// Runs the scenario against `market`; the first step that did not behave is the error.
pub async fn run(market: &Marketplace) -> Result<(), String> {
    let gateway = market.gateway;
    let mut alice = Browser::new(gateway, "alice");
    let mut bob = Browser::new(gateway, "bob");

    step(1, "A seller and a buyer sign up and log in");
    let login = alice.sign_up("alice's long password").await?;
    expect(alice.token().is_some(), || "no cookie after login".into())?;
    let set_cookie = login
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    expect(set_cookie.contains("HttpOnly"), || {
        format!("the cookie is not HttpOnly: {set_cookie}")
    })?;
    expect(login.body.get("access_token").is_none(), || {
        format!("the login answer shows the token: {}", login.body)
    })?;
    shown(format!(
        "the gateway keeps the token in an HttpOnly cookie; the answer says {}",
        login.body
    ));
    bob.sign_up("bob's long password").await?;
    let mut stranger = Browser::new(gateway, "stranger");
    let refused = stranger.get("/api/gigs").await?;
    expect(refused.status == StatusCode::UNAUTHORIZED, || {
        format!("without a cookie: {}", refused.status)
    })?;
    shown("without the cookie the gateway answers 401");

    step(
        2,
        "The seller names herself: her profile came from the signup event",
    );
    let profile = json!({"displayName": "Alice Smith", "bio": "logos and icons"});
    let mut renamed = alice
        .call(Method::PUT, "/api/users/me", Some(profile.clone()))
        .await?;
    for _ in 0..100 {
        if renamed.status != StatusCode::NOT_FOUND {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        renamed = alice
            .call(Method::PUT, "/api/users/me", Some(profile.clone()))
            .await?;
    }
    expect(renamed.status == StatusCode::OK, || {
        format!("updating the profile: {} {}", renamed.status, renamed.body)
    })?;
    shown(format!("users-service: {}", renamed.body));

    step(3, "She offers a gig; the buyer finds it");
    let gig = alice
        .post(
            "/api/gigs",
            json!({"title": "A logo in three days", "description": "vector, two revisions",
                   "priceCents": 12_000}),
        )
        .await?;
    expect(gig.status == StatusCode::OK, || {
        format!("creating a gig: {} {}", gig.status, gig.body)
    })?;
    let gig_id = gig.body["id"].as_str().unwrap_or_default().to_owned();
    expect(gig.body["sellerName"] == "Alice Smith", || {
        format!("the gig's seller name: {}", gig.body)
    })?;
    let gigs = bob.get("/api/gigs").await?;
    expect(
        gigs.body
            .as_array()
            .is_some_and(|gigs| gigs.iter().any(|g| g["id"] == gig_id.as_str())),
        || format!("the buyer's list: {}", gigs.body),
    )?;
    shown(format!(
        "gig {gig_id} by {} (her profile read through the gigs service's cache)",
        gig.body["sellerName"]
    ));

    step(4, "The buyer orders it; the seller is notified");
    let order = bob.post("/api/orders", json!({"gigId": gig_id})).await?;
    expect(order.status == StatusCode::OK, || {
        format!("ordering: {} {}", order.status, order.body)
    })?;
    let order_id = order.body["id"].as_str().unwrap_or_default().to_owned();
    shown(format!(
        "order {order_id}: {} (the gig read from the gigs service as it was placed)",
        order.body["status"]
    ));
    shown(alice.notified("ordered").await?);

    step(5, "They chat; the seller is notified of the message");
    let message = bob
        .post(
            "/api/chat/messages",
            json!({"to": "alice", "text": "Hi! Can it be blue?"}),
        )
        .await?;
    expect(message.status == StatusCode::OK, || {
        format!("sending: {} {}", message.status, message.body)
    })?;
    let conversation = alice.get("/api/chat/with/bob").await?;
    expect(
        conversation.body[0]["text"] == "Hi! Can it be blue?",
        || format!("the conversation: {}", conversation.body),
    )?;
    shown(format!("alice reads: {}", conversation.body[0]["text"]));
    shown(alice.notified("new message from bob").await?);

    step(
        6,
        "She delivers; he is notified and reviews it; the gig's rating follows",
    );
    let path = format!("/api/orders/{order_id}/complete");
    let refused = bob.post(&path, json!({})).await?;
    expect(refused.status == StatusCode::FORBIDDEN, || {
        format!("the buyer completing: {}", refused.status)
    })?;
    let done = alice.post(&path, json!({})).await?;
    expect(done.body["status"] == "completed", || {
        format!("completing: {} {}", done.status, done.body)
    })?;
    shown(bob.notified("you may review").await?);
    let review = json!({"orderId": order_id, "rating": 5, "comment": "Perfect, and blue."});
    let reviewed = bob.post("/api/reviews", review.clone()).await?;
    expect(reviewed.status == StatusCode::OK, || {
        format!("reviewing: {} {}", reviewed.status, reviewed.body)
    })?;
    let twice = bob.post("/api/reviews", review).await?;
    expect(twice.status == StatusCode::CONFLICT, || {
        format!("reviewing twice: {}", twice.status)
    })?;
    let rated = bob
        .eventually(&format!("/api/gigs/{gig_id}"), "no rating", |gig| {
            gig.body["reviews"] == 1
        })
        .await?;
    shown(format!(
        "a second review of the order is refused; the gig has {} review rated {}",
        rated.body["reviews"], rated.body["ratingSum"]
    ));

    step(7, "She renames herself; her gig follows the event");
    let profile = json!({"displayName": "Alice S.", "bio": "logos and icons"});
    alice
        .call(Method::PUT, "/api/users/me", Some(profile))
        .await?;
    let renamed = bob
        .eventually(&format!("/api/gigs/{gig_id}"), "no rename", |gig| {
            gig.body["sellerName"] == "Alice S."
        })
        .await?;
    shown(format!("the gig shows {}", renamed.body["sellerName"]));

    step(8, "A valid token sent to a service directly is refused");
    let token = bob.token().unwrap_or_default().to_owned();
    for (service, path) in [
        ("gigs-service", "/gigs".to_owned()),
        ("users-service", "/users/alice".to_owned()),
        ("orders-service", format!("/orders/{order_id}")),
    ] {
        let addr = market
            .service(service)
            .ok_or_else(|| format!("no {service}"))?;
        let direct = ShopClient::new(addr).get(&path, Some(&token)).await?;
        expect(direct.status == StatusCode::FORBIDDEN, || {
            format!("{service} directly: {} {}", direct.status, direct.body)
        })?;
        shown(format!("{service} at {addr}: {}", direct.status));
    }

    step(9, "Logging out clears the cookie");
    let logout = bob.post("/api/auth/logout", json!({})).await?;
    expect(
        logout.status == StatusCode::OK && bob.token().is_none(),
        || format!("logout: {} {:?}", logout.status, bob.token()),
    )?;
    let after = bob.get("/api/gigs").await?;
    expect(after.status == StatusCode::UNAUTHORIZED, || {
        format!("after logout: {}", after.status)
    })?;
    shown("after logout the gateway answers 401");
    println!("\nThe marketplace behaved.");
    Ok(())
}
