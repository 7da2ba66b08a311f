//! The goals example end to end: the scripted scenario on the embedded defaults and on
//! RabbitMQ, Redis and PostgreSQL, and the events compared field by field with the reference
//! design's JSON examples.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use goals::{
    Goals, GoalsOptions,
    api::{ClientForm, ClientsClient, GoalForm, GoalsClient},
    demo,
};
use mesh::bus::{Event, SubscriptionConfig};
use serde_json::Value;

/// The client event of the reference design (`003`, "Client Creation Flow"), verbatim.
const CLIENT_CREATED: &str = r#"{
  "clientId": 1,
  "eventType": "CREATED",
  "clientName": "John Doe",
  "clientEmail": "john@example.com",
  "timestamp": "2025-08-26T10:00:00"
}"#;

/// The goal event of the reference design (`003`, "Goal Creation Flow"), verbatim.
const GOAL_CREATED: &str = r#"{
  "goalId": 1,
  "eventType": "CREATED",
  "clientId": 1,
  "goalName": "Vacation Fund",
  "targetAmount": 5000.00,
  "timestamp": "2025-08-26T10:00:00"
}"#;

fn options(env: Vec<(String, String)>) -> GoalsOptions {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    GoalsOptions {
        client_addr: any,
        goal_addr: any,
        env,
    }
}

#[tokio::test]
async fn the_demo_behaves_on_the_embedded_defaults() {
    let goals = Goals::start(options(Vec::new())).await.unwrap();
    let outcome = demo::run(&goals).await;
    goals.shutdown().await.unwrap();
    outcome.unwrap();
}

#[tokio::test]
async fn the_demo_behaves_on_rabbitmq_redis_and_postgres() {
    let run = format!("goals-test-{}", mesh_testkit::unique());
    let Some(env) = mesh_testkit::real_backends("GOALS_NAMESPACE", &run) else {
        return;
    };
    let goals = Goals::start(options(env)).await.unwrap();
    let outcome = demo::run(&goals).await;
    goals.shutdown().await.unwrap();
    outcome.unwrap();
}

/// `actual` has every field of `example` with a value of the same JSON type, and the same
/// value except for the timestamp, which has the example's shape.
fn same_fields(actual: &Value, example: &str) {
    let example: Value = serde_json::from_str(example).unwrap();
    for (field, wanted) in example.as_object().unwrap() {
        let got = actual
            .get(field)
            .unwrap_or_else(|| panic!("`{field}` is missing from {actual}"));
        if field == "timestamp" {
            let text = got.as_str().unwrap();
            let shape: String = text
                .chars()
                .map(|c| if c.is_ascii_digit() { '9' } else { c })
                .collect();
            assert_eq!(shape, "9999-99-99T99:99:99", "{text}");
        } else if wanted.is_number() {
            assert_eq!(got.as_f64(), wanted.as_f64(), "`{field}` of {actual}");
        } else {
            assert_eq!(got, wanted, "`{field}` of {actual}");
        }
    }
    assert_eq!(actual["source"].as_str().map(str::is_empty), Some(false));
}

#[tokio::test]
async fn the_events_carry_the_reference_designs_fields() {
    let goals = Goals::start(options(Vec::new())).await.unwrap();
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let mut config = SubscriptionConfig::new("observer", "events", ["client.*", "goal.*"]);
    config.transient = true;
    let observer = seen.clone();
    let _observing = goals
        .bus()
        .await
        .unwrap()
        .subscribe(
            config,
            Arc::new(move |event: Event| {
                observer.lock().unwrap().push(event);
                async { Ok(()) }
            }),
        )
        .await
        .unwrap();
    let clients = ClientsClient::new(&goals.caller);
    let john = clients
        .create(ClientForm {
            name: "John Doe".into(),
            email: "john@example.com".into(),
        })
        .await
        .unwrap();
    let goal = GoalsClient::new(&goals.caller)
        .create(GoalForm {
            client_id: john.id,
            name: "Vacation Fund".into(),
            target_amount: 5000.00,
        })
        .await
        .unwrap();
    assert_eq!((john.id, goal.id), (1, 1), "the examples' identifiers");
    let mut found = None;
    for _ in 0..400 {
        let events = seen.lock().unwrap().clone();
        let of = |ty: &str| events.iter().find(|event| event.ty == ty).cloned();
        if let (Some(client), Some(goal)) = (of("client.created"), of("goal.created")) {
            found = Some((client, goal));
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (client, goal) = found.expect("both events observed");
    same_fields(&client.data, CLIENT_CREATED);
    same_fields(&goal.data, GOAL_CREATED);
    assert_eq!(client.subject.as_deref(), Some("1"), "keyed by client");
    goals.shutdown().await.unwrap();
}
