//! The scripted scenario, through the gateway only, as a browser or a mobile app would: each
//! step says what it shows and checks that the shop behaved.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::{Value, json};

/// An answer: status, headers, JSON body (`null` when there is none or it is not JSON).
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON.
    pub body: Value,
}

/// A client of the shop's gateway.
#[derive(Debug, Clone)]
pub struct ShopClient {
    http: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl ShopClient {
    /// A client of the gateway at `gateway`.
    pub fn new(gateway: SocketAddr) -> Self {
        Self {
            http: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{gateway}"),
        }
    }

    /// `method path` with an optional bearer `token` and JSON `body`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Answer, String> {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|bearer| ("authorization", bearer.as_str()))
            .collect();
        self.send(method, path, &headers, body).await
    }

    /// `method path` with `headers` and JSON `body`, from the shop's web origin.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Answer, String> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header(header::ORIGIN, "http://localhost:3000");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let answer = self
            .http
            .request(request)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let (parts, body) = answer.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }

    /// `POST path` with `body`.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Result<Answer, String> {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<Answer, String> {
        self.call(Method::GET, path, token, None).await
    }

    /// `PUT path` with `body`.
    pub async fn put(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Result<Answer, String> {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    /// Signs `user` up (an existing user is fine) and logs in: the token pair.
    pub async fn login(&self, user: &str, password: &str) -> Result<(String, String), String> {
        let credentials = json!({"username": user, "password": password});
        let signup = self
            .post("/api/auth/signup", None, credentials.clone())
            .await?;
        if !matches!(signup.status.as_u16(), 201 | 409) {
            return Err(format!(
                "signup of {user}: {} {}",
                signup.status, signup.body
            ));
        }
        self.login_only(user, password).await
    }

    /// Logs in: the access and refresh tokens.
    pub async fn login_only(&self, user: &str, password: &str) -> Result<(String, String), String> {
        let credentials = json!({"username": user, "password": password});
        let login = self.post("/api/auth/login", None, credentials).await?;
        expect(login.status == StatusCode::OK, || {
            format!("login of {user}: {} {}", login.status, login.body)
        })?;
        let access = login.body["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let refresh = login.body["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok((access, refresh))
    }

    /// Opens `token`'s notification WebSocket through the gateway.
    pub async fn notification_socket(&self, token: &str) -> Result<NotificationSocket, String> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!(
            "{}/api/notifications/stream",
            self.base.replacen("http", "ws", 1)
        );
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| "a token that is no header value")?;
        request.headers_mut().insert(header::AUTHORIZATION, bearer);
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| format!("the notification socket: {e}"))?;
        Ok(NotificationSocket { socket })
    }

    /// Places an order of `quantity` of `sku`.
    pub async fn order(&self, token: &str, sku: &str, quantity: u32) -> Result<Answer, String> {
        let order = json!({"lines": [{"sku": sku, "quantity": quantity}]});
        self.post("/api/orders", Some(token), order).await
    }
}

/// A user's notification WebSocket.
pub struct NotificationSocket {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl std::fmt::Debug for NotificationSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationSocket").finish_non_exhaustive()
    }
}

impl NotificationSocket {
    /// Reads notifications until one's text contains `text` (within 5 s).
    pub async fn wait_for(&mut self, text: &str) -> Result<String, String> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .map_err(|_| format!("no notification saying `{text}` on the socket within 5 s"))?
                .ok_or("the notification socket closed")?
                .map_err(|e| format!("the notification socket: {e}"))?;
            if let tokio_tungstenite::tungstenite::Message::Text(json) = message {
                let notification: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
                if let Some(said) = notification["text"].as_str()
                    && said.contains(text)
                {
                    return Ok(said.to_owned());
                }
            }
        }
    }
}

/// `Ok` when `holds`, else the error `what` says.
pub fn expect(holds: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if holds { Ok(()) } else { Err(what()) }
}

/// One step of the scenario: its title, then what it showed.
pub fn step(number: u32, title: &str) {
    println!("\n{number}. {title}");
}

/// What a step showed.
pub fn shown(what: impl AsRef<str>) {
    println!("   ✓ {}", what.as_ref());
}

/// Runs the scenario against the shop at `gateway`; `admin_password` is the admin's.
/// Returns the first step that did not behave.
pub async fn run(gateway: SocketAddr, admin_password: &str) -> Result<(), String> {
    let shop = ShopClient::new(gateway);

    step(1, "A customer signs up and logs in");
    let (alice, alice_refresh) = shop.login("alice", "correct horse battery").await?;
    shown("signup answered 201, login answered a token pair");
    let wrong = shop
        .post(
            "/api/auth/login",
            None,
            json!({"username": "alice", "password": "wrong password"}),
        )
        .await?;
    let nobody = shop
        .post(
            "/api/auth/login",
            None,
            json!({"username": "nobody", "password": "wrong password"}),
        )
        .await?;
    expect(
        wrong.status == StatusCode::UNAUTHORIZED
            && nobody.status == wrong.status
            && nobody.body["error"]["message"] == wrong.body["error"]["message"],
        || {
            format!(
                "wrong logins: {} {} / {} {}",
                wrong.status, wrong.body, nobody.status, nobody.body
            )
        },
    )?;
    shown("a wrong password and an unknown user get the same 401");

    step(2, "The admin fills the catalog and the stock");
    let (admin, _) = shop.login_only("admin", admin_password).await?;
    for (sku, name, price, stock) in [("tea", "Green tea", 450, 100), ("mug", "Blue mug", 1200, 3)]
    {
        let product = json!({"sku": sku, "name": name, "price_cents": price});
        let put = shop
            .put(
                &format!("/api/products/{sku}"),
                Some(&admin),
                product.clone(),
            )
            .await?;
        expect(put.status == StatusCode::OK, || {
            format!("product {sku}: {} {}", put.status, put.body)
        })?;
        let restock = shop
            .put(
                &format!("/api/inventory/{sku}"),
                Some(&admin),
                json!({"available": stock}),
            )
            .await?;
        expect(restock.status == StatusCode::OK, || {
            format!("stock {sku}: {} {}", restock.status, restock.body)
        })?;
    }
    let as_customer = shop
        .put(
            "/api/products/tea",
            Some(&alice),
            json!({"sku": "tea", "name": "Free tea", "price_cents": 0}),
        )
        .await?;
    expect(as_customer.status == StatusCode::FORBIDDEN, || {
        format!("a customer writing the catalog: {}", as_customer.status)
    })?;
    shown("two products and their stock; a customer writing the catalog gets 403");

    step(3, "Anyone browses the catalog, without a token");
    let catalog = shop.get("/api/products", None).await?;
    let count = catalog.body.as_array().map_or(0, Vec::len);
    expect(catalog.status == StatusCode::OK && count == 2, || {
        format!("catalog: {} {}", catalog.status, catalog.body)
    })?;
    let orders_anonymous = shop.get("/api/orders", None).await?;
    expect(orders_anonymous.status == StatusCode::UNAUTHORIZED, || {
        format!("orders without a token: {}", orders_anonymous.status)
    })?;
    shown("the catalog answers anyone; the orders need a token (401 without)");

    step(
        4,
        "The customer opens the notification socket and orders: stock held, paid, events out",
    );
    let mut socket = shop.notification_socket(&alice).await?;
    let order = shop.order(&alice, "tea", 2).await?;
    expect(
        order.status == StatusCode::OK && order.body["status"] == "PAID",
        || format!("order: {} {}", order.status, order.body),
    )?;
    let id = order.body["id"].as_str().unwrap_or_default().to_owned();
    shown(format!(
        "order {id}: PAID, {} cents",
        order.body["total_cents"]
    ));
    let sold_out = shop.order(&alice, "mug", 4).await?;
    expect(sold_out.status == StatusCode::CONFLICT, || {
        format!(
            "an order over the stock: {} {}",
            sold_out.status, sold_out.body
        )
    })?;
    shown("an order over the stock gets 409 out_of_stock, and nothing is held");

    step(
        5,
        "The notification arrives over the WebSocket, through the gateway",
    );
    let told = socket.wait_for(&format!("order {id} is paid")).await?;
    shown(format!("alice's socket says: \"{told}\""));
    let inbox = wait_for_notification(&shop, &alice, &format!("order {id} is paid")).await?;
    shown(format!(
        "and her inbox (GET /api/notifications) keeps it: \"{inbox}\""
    ));

    step(
        6,
        "The payment provider goes down: after 5 failures the circuit opens",
    );
    let before = payment_stats(&shop, &admin).await?;
    let outage = shop
        .post(
            "/api/admin/payment/outage",
            Some(&admin),
            json!({"on": true}),
        )
        .await?;
    expect(outage.status == StatusCode::OK, || {
        format!("outage on: {} {}", outage.status, outage.body)
    })?;
    let mut pending = Vec::new();
    for n in 1..=7 {
        let order = shop.order(&alice, "tea", 1).await?;
        expect(
            order.status == StatusCode::OK && order.body["status"] == "PENDING_PAYMENT",
            || format!("order {n} in the outage: {} {}", order.status, order.body),
        )?;
        pending.push(order.body["id"].as_str().unwrap_or_default().to_owned());
        println!(
            "     order {n}: PENDING_PAYMENT ({})",
            order.body["reason"].as_str().unwrap_or_default()
        );
    }
    let after = payment_stats(&shop, &admin).await?;
    let reached = after.0 - before.0;
    expect(reached == 5, || {
        format!("{reached} charges reached payment in the outage, not 5")
    })?;
    shown(
        "7 orders, all kept as PENDING_PAYMENT by the fallback; only 5 reached payment: then the circuit opened",
    );

    step(
        7,
        "Payment recovers; the circuit half-opens, one call succeeds, it closes",
    );
    let outage = shop
        .post(
            "/api/admin/payment/outage",
            Some(&admin),
            json!({"on": false}),
        )
        .await?;
    expect(outage.status == StatusCode::OK, || {
        format!("outage off: {}", outage.status)
    })?;
    let mut paid = None;
    for _ in 0..50 {
        let order = shop.order(&alice, "tea", 1).await?;
        if order.body["status"] == "PAID" {
            paid = Some(order.body["id"].as_str().unwrap_or_default().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let paid = paid.ok_or("no order was paid within 5 s of the recovery")?;
    let next = shop.order(&alice, "tea", 1).await?;
    expect(next.body["status"] == "PAID", || {
        format!("after recovery: {}", next.body)
    })?;
    shown(format!(
        "order {paid} paid once the wait was over, and the next one too: closed"
    ));
    let before = payment_stats(&shop, &admin).await?;
    for id in &pending {
        let path = format!("/api/orders/{id}/payment");
        let paid = shop.post(&path, Some(&alice), json!(null)).await?;
        expect(paid.body["status"] == "PAID", || {
            format!("paying {id} again: {} {}", paid.status, paid.body)
        })?;
    }
    let again = shop
        .post(
            &format!("/api/orders/{}/payment", pending[0]),
            Some(&alice),
            json!(null),
        )
        .await?;
    expect(again.status == StatusCode::CONFLICT, || {
        format!("paying a paid order: {} {}", again.status, again.body)
    })?;
    let after = payment_stats(&shop, &admin).await?;
    let charged = after.0 - before.0;
    expect(charged == 7, || {
        format!("{charged} charges for the 7 pending orders, not 7")
    })?;
    shown(
        "the 7 PENDING_PAYMENT orders are paid again (POST /api/orders/{id}/payment), one charge each; a paid one is 409",
    );

    step(8, "A token with a forged role is refused at the edge");
    let forged = raise_role(&alice);
    let refused = shop
        .post(
            "/api/admin/payment/outage",
            Some(&forged),
            json!({"on": true}),
        )
        .await?;
    expect(refused.status == StatusCode::UNAUTHORIZED, || {
        format!("forged role: {}", refused.status)
    })?;
    let forbidden = shop
        .post(
            "/api/admin/payment/outage",
            Some(&alice),
            json!({"on": true}),
        )
        .await?;
    expect(forbidden.status == StatusCode::FORBIDDEN, || {
        format!("customer at an admin route: {}", forbidden.status)
    })?;
    shown("the forged token gets 401 (its signature no longer matches); the real one 403");

    step(
        9,
        "Refresh tokens rotate; a reused one revokes the whole family",
    );
    let first = shop
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": alice_refresh}),
        )
        .await?;
    expect(first.status == StatusCode::OK, || {
        format!("refresh: {} {}", first.status, first.body)
    })?;
    let rotated = first.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let reused = shop
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": alice_refresh}),
        )
        .await?;
    expect(reused.status == StatusCode::UNAUTHORIZED, || {
        format!("reused refresh token: {}", reused.status)
    })?;
    let after_reuse = shop
        .post("/api/auth/refresh", None, json!({"refresh_token": rotated}))
        .await?;
    expect(after_reuse.status == StatusCode::UNAUTHORIZED, || {
        format!("rotated token after a reuse: {}", after_reuse.status)
    })?;
    shown(
        "the first refresh answered a new pair; replaying the old token got 401, and killed the new one too",
    );

    step(10, "Logout clears the cookie and revokes the session");
    let (bob, bob_refresh) = shop.login("bob", "another good password").await?;
    let cookie = shop
        .post(
            "/api/auth/login",
            None,
            json!({"username": "bob", "password": "another good password"}),
        )
        .await?
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    expect(cookie.contains("HttpOnly"), || {
        format!("login cookie: {cookie:?}")
    })?;
    let out = shop
        .post(
            "/api/auth/logout",
            Some(&bob),
            json!({"refresh_token": bob_refresh}),
        )
        .await?;
    let cleared = out
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    expect(
        out.status == StatusCode::OK && cleared.contains("Max-Age=0"),
        || format!("logout: {} {cleared:?}", out.status),
    )?;
    let again = shop
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": bob_refresh}),
        )
        .await?;
    expect(again.status == StatusCode::UNAUTHORIZED, || {
        format!("refresh after logout: {}", again.status)
    })?;
    shown("login set an HttpOnly cookie; logout cleared it, and the refresh token no longer works");

    println!("\nEvery step behaved.");
    Ok(())
}

/// Polls the user's notifications until one contains `text` (the bus delivers asynchronously).
pub async fn wait_for_notification(
    shop: &ShopClient,
    token: &str,
    text: &str,
) -> Result<String, String> {
    for _ in 0..100 {
        let inbox = shop.get("/api/notifications", Some(token)).await?;
        if let Some(found) = inbox
            .body
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["text"].as_str())
            .find(|t| t.contains(text))
        {
            return Ok(found.to_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("no notification saying `{text}` within 5 s"))
}

/// The payment service's `(attempted, failed)` counts.
async fn payment_stats(shop: &ShopClient, admin: &str) -> Result<(u64, u64), String> {
    let stats = shop.get("/api/admin/payment/stats", Some(admin)).await?;
    expect(stats.status == StatusCode::OK, || {
        format!("payment stats: {} {}", stats.status, stats.body)
    })?;
    Ok((
        stats.body["attempted"].as_u64().unwrap_or_default(),
        stats.body["failed"].as_u64().unwrap_or_default(),
    ))
}

/// `token` with its roles raised to `admin`, its signature kept: a forgery.
pub fn raise_role(token: &str) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    if let Some(claims) = parts.get(1).and_then(|c| URL_SAFE_NO_PAD.decode(c).ok()) {
        let raised = String::from_utf8_lossy(&claims).replace("\"customer\"", "\"admin\"");
        parts[1] = URL_SAFE_NO_PAD.encode(raised.as_bytes());
    }
    parts.join(".")
}
