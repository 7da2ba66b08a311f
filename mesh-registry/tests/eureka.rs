//! Eureka's REST API, with bodies shaped as the Java, Python and JavaScript clients send them.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use http_body_util::BodyExt;
use mesh_registry::{Registry, RegistryConfig, api::router};
use serde_json::Value;
use tower::ServiceExt;

/// Spring Cloud Netflix's registration (Jackson codec).
const SPRING_BOOT_JSON: &str = r#"{"instance":{
  "instanceId":"192.168.1.10:inventory-service:8081","hostName":"192.168.1.10",
  "app":"INVENTORY-SERVICE","ipAddr":"192.168.1.10","status":"UP","overriddenStatus":"UNKNOWN",
  "port":{"$":8081,"@enabled":"true"},"securePort":{"$":443,"@enabled":"false"},"countryId":1,
  "dataCenterInfo":{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"},
  "leaseInfo":{"renewalIntervalInSecs":30,"durationInSecs":90,"registrationTimestamp":0,
    "lastRenewalTimestamp":0,"evictionTimestamp":0,"serviceUpTimestamp":0},
  "metadata":{"management.port":"8081","zone":"eu-1"},
  "homePageUrl":"http://192.168.1.10:8081/","statusPageUrl":"http://192.168.1.10:8081/actuator/info",
  "healthCheckUrl":"http://192.168.1.10:8081/actuator/health","vipAddress":"inventory-service",
  "secureVipAddress":"inventory-service","isCoordinatingDiscoveryServer":"false",
  "lastUpdatedTimestamp":"1700000000000","lastDirtyTimestamp":"1700000000000"}}"#;

/// The XML document of Eureka's XStream codec (older Java clients, and what some clients read).
const XML_REGISTRATION: &str = r#"<instance>
  <instanceId>10.0.0.5:order-service:5000</instanceId>
  <hostName>10.0.0.5</hostName>
  <app>ORDER-SERVICE</app>
  <ipAddr>10.0.0.5</ipAddr>
  <status>UP</status>
  <overriddenstatus>UNKNOWN</overriddenstatus>
  <port enabled="true">5000</port>
  <securePort enabled="false">443</securePort>
  <countryId>1</countryId>
  <dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo>
  <leaseInfo><renewalIntervalInSecs>30</renewalIntervalInSecs><durationInSecs>90</durationInSecs></leaseInfo>
  <metadata class="java.util.Collections$EmptyMap"/>
  <homePageUrl>http://10.0.0.5:5000/</homePageUrl>
  <vipAddress>order-service</vipAddress>
  <secureVipAddress>order-service</secureVipAddress>
  <isCoordinatingDiscoveryServer>false</isCoordinatingDiscoveryServer>
  <lastUpdatedTimestamp>1700000000000</lastUpdatedTimestamp>
  <lastDirtyTimestamp>1700000000000</lastDirtyTimestamp>
</instance>"#;

/// py-eureka-client's JSON registration (string ports, no instance id in older versions).
const PY_EUREKA_JSON: &str = r#"{"instance": {"instanceId": "10.0.0.7:notification:5001",
  "hostName": "10.0.0.7", "app": "NOTIFICATION", "ipAddr": "10.0.0.7", "status": "UP",
  "overriddenstatus": "UNKNOWN", "port": {"$": "5001", "@enabled": "true"},
  "securePort": {"$": "443", "@enabled": "false"}, "countryId": 1,
  "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
  "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90},
  "metadata": {"management.port": "5001"}, "vipAddress": "notification",
  "secureVipAddress": "notification", "isCoordinatingDiscoveryServer": "false"}}"#;

/// eureka-js-client's registration: boolean `@enabled`, no instance id (the host name is the id).
const EUREKA_JS_JSON: &str = r#"{"instance":{"hostName":"cart-1","app":"CART","ipAddr":"10.0.0.8",
  "vipAddress":"cart","port":{"$":3000,"@enabled":true},
  "dataCenterInfo":{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"},
  "status":"UP"}}"#;

fn app() -> Router {
    router(Arc::new(Registry::new(RegistryConfig::default())))
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn json(app: &Router, uri: &str) -> Value {
    let (status, body) = send(app, Method::GET, uri, None, Some("application/json"), "").await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn a_spring_boot_registration_appears_in_eurekas_json_shape() {
    let app = app();
    let (status, _) = send(
        &app,
        Method::POST,
        "/eureka/apps/INVENTORY-SERVICE",
        Some("application/json"),
        None,
        SPRING_BOOT_JSON,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let apps = json(&app, "/eureka/apps").await;
    let applications = &apps["applications"];
    assert_eq!(applications["versions__delta"], "1");
    assert_eq!(applications["apps__hashcode"], "UP_1_");
    let application = &applications["application"][0];
    assert_eq!(application["name"], "INVENTORY-SERVICE");
    let instance = &application["instance"][0];
    assert_eq!(
        instance["instanceId"],
        "192.168.1.10:inventory-service:8081"
    );
    assert_eq!(instance["app"], "INVENTORY-SERVICE");
    assert_eq!(instance["status"], "UP");
    assert_eq!(instance["overriddenStatus"], "UNKNOWN");
    assert_eq!(
        instance["port"],
        serde_json::json!({"$": 8081, "@enabled": "true"})
    );
    assert_eq!(
        instance["securePort"],
        serde_json::json!({"$": 443, "@enabled": "false"})
    );
    assert_eq!(instance["leaseInfo"]["renewalIntervalInSecs"], 30);
    assert_eq!(instance["leaseInfo"]["durationInSecs"], 90);
    assert!(
        instance["lastUpdatedTimestamp"].is_string(),
        "timestamps are strings"
    );
    assert!(instance["lastDirtyTimestamp"].is_string());
    assert_eq!(instance["isCoordinatingDiscoveryServer"], "false");
    assert_eq!(instance["actionType"], "ADDED");
    assert_eq!(instance["metadata"]["management.port"], "8081");
    assert_eq!(
        instance["healthCheckUrl"],
        "http://192.168.1.10:8081/actuator/health"
    );
    assert_eq!(
        instance["dataCenterInfo"]["@class"],
        "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
    );

    // One catalogue: the Java service is discoverable through the native API.
    let native = json(&app, "/v1/services/inventory-service").await;
    let found = &native["instances"][0];
    assert_eq!(found["host"], "192.168.1.10");
    assert_eq!(found["port"], 8081);
    assert_eq!(found["zone"], "eu-1");
}

#[tokio::test]
async fn xml_registrations_are_accepted_and_xml_is_the_default_answer() {
    let app = app();
    let (status, body) = send(
        &app,
        Method::POST,
        "/eureka/apps/ORDER-SERVICE",
        Some("application/xml"),
        None,
        XML_REGISTRATION,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (status, xml) = send(&app, Method::GET, "/eureka/apps", None, None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(xml.starts_with("<applications>"), "{xml}");
    assert!(xml.contains("<apps__hashcode>UP_1_</apps__hashcode>"));
    assert!(xml.contains("<name>ORDER-SERVICE</name>"));
    assert!(xml.contains("<port enabled=\"true\">5000</port>"));
    assert!(xml.contains("<overriddenstatus>UNKNOWN</overriddenstatus>"));
    assert!(xml.contains("<metadata class=\"java.util.Collections$EmptyMap\"/>"));
    // The document is well-formed: it parses back.
    let mut reader = quick_xml::Reader::from_str(&xml);
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Eof => break,
            _ => continue,
        }
    }
}

#[tokio::test]
async fn python_and_javascript_clients_register_and_renew() {
    let app = app();
    let (status, _) = send(
        &app,
        Method::POST,
        "/eureka/apps/NOTIFICATION",
        Some("application/json"),
        None,
        PY_EUREKA_JSON,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(
        &app,
        Method::POST,
        "/eureka/v2/apps/CART",
        Some("application/json"),
        None,
        EUREKA_JS_JSON,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // eureka-js-client renews under the host name.
    let (status, _) = send(
        &app,
        Method::PUT,
        "/eureka/v2/apps/CART/cart-1",
        None,
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(
        &app,
        Method::PUT,
        "/eureka/apps/NOTIFICATION/10.0.0.7:notification:5001?status=UP&lastDirtyTimestamp=1700000000000",
        None,
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let apps = json(&app, "/eureka/v2/apps").await;
    assert_eq!(apps["applications"]["apps__hashcode"], "UP_2_");
    let cart = json(&app, "/eureka/apps/CART").await;
    assert_eq!(cart["application"]["instance"][0]["port"]["$"], 3000);
}

#[tokio::test]
async fn an_unknown_renewal_is_a_404_so_the_client_registers_again() {
    let app = app();
    let (status, body) = send(&app, Method::PUT, "/eureka/apps/CART/ghost", None, None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("\"not_found\""), "{body}");
}

#[tokio::test]
async fn status_overrides_and_cancellation_show_in_the_delta() {
    let app = app();
    send(
        &app,
        Method::POST,
        "/eureka/apps/INVENTORY-SERVICE",
        Some("application/json"),
        None,
        SPRING_BOOT_JSON,
    )
    .await;
    let id = "192.168.1.10:inventory-service:8081";
    let (status, _) = send(
        &app,
        Method::PUT,
        &format!("/eureka/apps/INVENTORY-SERVICE/{id}/status?value=OUT_OF_SERVICE"),
        None,
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let one = json(&app, &format!("/eureka/apps/INVENTORY-SERVICE/{id}")).await;
    assert_eq!(one["instance"]["status"], "OUT_OF_SERVICE");
    assert_eq!(one["instance"]["overriddenStatus"], "OUT_OF_SERVICE");

    let delta = json(&app, "/eureka/apps/delta").await;
    assert_eq!(delta["applications"]["apps__hashcode"], "OUT_OF_SERVICE_1_");
    assert_eq!(
        delta["applications"]["application"][0]["instance"][0]["actionType"],
        "MODIFIED"
    );

    let (status, _) = send(
        &app,
        Method::DELETE,
        &format!("/eureka/apps/INVENTORY-SERVICE/{id}"),
        None,
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let delta = json(&app, "/eureka/apps/delta").await;
    assert_eq!(delta["applications"]["apps__hashcode"], "");
    assert_eq!(
        delta["applications"]["application"][0]["instance"][0]["actionType"],
        "DELETED"
    );
}

#[tokio::test]
async fn native_registrations_are_eureka_applications() {
    let app = app();
    let (status, body) = send(
        &app,
        Method::POST,
        "/v1/services/goal-service/instances",
        Some("application/json"),
        None,
        r#"{"host": "10.1.0.3", "port": 9000, "metadata": {"version": "1.4"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let apps = json(&app, "/eureka/apps").await;
    let application = &apps["applications"]["application"][0];
    assert_eq!(application["name"], "GOAL-SERVICE");
    assert_eq!(application["instance"][0]["hostName"], "10.1.0.3");
    assert_eq!(application["instance"][0]["metadata"]["version"], "1.4");
    assert_eq!(application["instance"][0]["vipAddress"], "goal-service");
}

#[tokio::test]
async fn bad_input_gets_a_clear_400_not_a_crash() {
    let app = app();
    let cases = [
        ("application/json", "{not json"),
        ("application/json", r#"{"instance":{"app":"CART"}}"#),
        (
            "application/json",
            r#"{"instance":{"app":"OTHER","hostName":"h","port":{"$":1}}}"#,
        ),
        ("application/xml", "<instance><app>CART</app>"),
        (
            "application/json",
            r#"{"instance":{"app":"CART","hostName":"h","port":{"$":"x"}}}"#,
        ),
    ];
    for (content_type, body) in cases {
        let (status, answer) = send(
            &app,
            Method::POST,
            "/eureka/apps/CART",
            Some(content_type),
            None,
            body,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert!(answer.contains("bad_request"));
    }
    let (status, _) = send(
        &app,
        Method::PUT,
        "/eureka/apps/CART/x/status?value=SLEEPY",
        None,
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let huge = format!("{{\"instance\":{{\"app\":\"{}\"}}}}", "A".repeat(300_000));
    let (status, _) = send(
        &app,
        Method::POST,
        "/eureka/apps/CART",
        Some("application/json"),
        None,
        &huge,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn health_and_metrics_answer() {
    let app = app();
    send(
        &app,
        Method::POST,
        "/eureka/apps/INVENTORY-SERVICE",
        Some("application/json"),
        None,
        SPRING_BOOT_JSON,
    )
    .await;
    let health = json(&app, "/health").await;
    assert_eq!(health["status"], "UP");
    let (status, text) = send(&app, Method::GET, "/metrics", None, None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("mesh_registry_instances{service=\"inventory-service\",status=\"UP\"} 1")
    );
    assert!(text.contains("# TYPE mesh_registry_renewals_total counter"));
    assert!(text.contains("mesh_registry_self_preservation 0"));
}
