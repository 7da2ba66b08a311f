//! The scripted scenario: every flow of the reference design, then a duplicate event and a
//! poison event, each step checked; through the services' HTTP APIs (typed clients by service
//! ID) and the bus.

use std::time::Duration;

use mesh::{
    MeshError,
    axum::http::StatusCode,
    bus::{DeadLetter, Event, EventType},
};
use serde::{Deserialize, Serialize};

use crate::{
    api::{ClientEvent, ClientForm, ClientsClient, EventKind, GoalForm, GoalsClient, event},
    system::Goals,
};

/// A `client.created` event whose `clientId` is not a number: it cannot be handled.
#[derive(Debug, Serialize, Deserialize)]
struct Malformed {
    #[serde(rename = "clientId")]
    client_id: String,
}

impl EventType for Malformed {
    const TYPE: &'static str = "client.created";
}

fn step(n: u32, title: &str) {
    println!("{n}. {title}");
}

fn shown(text: &str) {
    println!("   ✓ {text}");
}

fn expect(holds: bool, failed: impl FnOnce() -> String) -> Result<(), String> {
    if holds { Ok(()) } else { Err(failed()) }
}

fn failed(what: &str) -> impl FnOnce(MeshError) -> String + '_ {
    move |error| format!("{what}: {error}")
}

/// Waits until `check` holds, for at most `within`.
async fn until<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Runs the scenario against `goals`; `Err` names the first step that did not behave.
pub async fn run(goals: &Goals) -> Result<(), String> {
    let clients = ClientsClient::new(&goals.caller);
    let goal_service = GoalsClient::new(&goals.caller);
    let soon = Duration::from_secs(10);

    step(
        1,
        "A client is created: client.created reaches the goal service's cache",
    );
    let john = clients
        .create(ClientForm {
            name: "John Doe".into(),
            email: "john@example.com".into(),
        })
        .await
        .map_err(failed("creating a client"))?;
    let handled = || async { goal_service.client_events_handled().await.unwrap_or(0) };
    expect(until(soon, || async { handled().await >= 1 }).await, || {
        "the goal service never handled client.created".into()
    })?;
    shown(&format!(
        "client {} \"{}\" <{}>; the goal service has it cached",
        john.id, john.name, john.email
    ));

    step(
        2,
        "A goal is created once the client service confirms the client",
    );
    let vacation = goal_service
        .create(GoalForm {
            client_id: john.id,
            name: "Vacation Fund".into(),
            target_amount: 5000.00,
        })
        .await
        .map_err(failed("creating a goal"))?;
    let unknown = goal_service
        .create(GoalForm {
            client_id: 999,
            name: "Nobody's".into(),
            target_amount: 10.0,
        })
        .await;
    expect(
        matches!(&unknown, Err(error) if error.status() == StatusCode::NOT_FOUND),
        || format!("a goal of an unknown client: {unknown:?}"),
    )?;
    let refs_hold = |wanted: Vec<u64>| {
        let clients = clients.clone();
        async move {
            clients
                .goals(john.id)
                .await
                .is_ok_and(|refs| refs == wanted)
        }
    };
    expect(until(soon, || refs_hold(vec![vacation.id])).await, || {
        "the client service never listed the goal".into()
    })?;
    shown(&format!(
        "goal {} \"{}\" of {:.2} for client {}; a goal of client 999 gets 404",
        vacation.id, vacation.name, vacation.target_amount, vacation.client_id
    ));
    shown("goal.created reached the client service: its goal references list the goal");

    step(3, "Updates travel as client.updated and goal.updated");
    clients
        .update(
            john.id,
            ClientForm {
                name: "John A. Doe".into(),
                email: "john@example.com".into(),
            },
        )
        .await
        .map_err(failed("updating the client"))?;
    let renamed = || async {
        goal_service
            .goal(vacation.id)
            .await
            .is_ok_and(|view| view.client_name == "John A. Doe")
    };
    expect(until(soon, renamed).await, || {
        "the goal service's cache never saw the new name".into()
    })?;
    let retargeted = goal_service
        .update(
            vacation.id,
            GoalForm {
                client_id: john.id,
                name: "Vacation Fund".into(),
                target_amount: 6500.00,
            },
        )
        .await
        .map_err(failed("updating the goal"))?;
    shown("the goal service shows the client's new name, from its cache");
    shown(&format!(
        "the goal's target is now {:.2}",
        retargeted.target_amount
    ));

    step(4, "The same event delivered twice is handled once");
    let before = handled().await;
    let payload = ClientEvent {
        client_id: john.id,
        event_type: EventKind::Updated,
        client_name: "John A. Doe".into(),
        client_email: "john@example.com".into(),
        timestamp: crate::api::timestamp(),
        source: "client-service".into(),
    };
    let duplicated = event(
        "client-service",
        "client",
        john.id,
        EventKind::Updated,
        &payload,
    )
    .map_err(failed("building the event"))?;
    let bus = goals.bus().await.map_err(failed("the bus"))?;
    for _ in 0..2 {
        bus.publish(duplicated.clone())
            .await
            .map_err(|e| format!("publishing the duplicate: {e}"))?;
    }
    // A distinct event after it, on the same subject: once it is handled, so was the pair.
    let marker = event(
        "client-service",
        "client",
        john.id,
        EventKind::Updated,
        &payload,
    )
    .map_err(failed("building the event"))?;
    bus.publish(marker)
        .await
        .map_err(|e| format!("publishing the marker: {e}"))?;
    expect(
        until(soon, || async { handled().await >= before + 2 }).await,
        || "the events were not handled".into(),
    )?;
    let after = handled().await;
    expect(after == before + 2, || {
        format!("three deliveries, two events: handled {}", after - before)
    })?;
    shown(&format!(
        "event {} published twice, then another: 2 handled",
        duplicated.id
    ));

    step(
        5,
        "A poison event is retried with backoff, then dead-lettered",
    );
    let poison = Event::new(
        "client-service",
        &Malformed {
            client_id: "not a number".into(),
        },
    )
    .map_err(|e| format!("building the poison event: {e}"))?;
    let poison_id = poison.id.clone();
    bus.publish(poison)
        .await
        .map_err(|e| format!("publishing the poison event: {e}"))?;
    let mut letters: Vec<DeadLetter> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let letter = loop {
        if let Ok(found) = bus.dead_letters("client.events", 16).await {
            letters.extend(found);
        }
        if let Some(letter) = letters.iter().find(|letter| letter.event.id == poison_id) {
            break letter;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err("the poison event never reached client.events.dlq".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    shown(&format!(
        "after {} attempts (1 s, then 2 s apart) it is in client.events.dlq: {}",
        letter.attempts, letter.reason
    ));

    step(6, "Deleting a client deletes its goals, by event");
    let second = goal_service
        .create(GoalForm {
            client_id: john.id,
            name: "Emergency Fund".into(),
            target_amount: 1200.00,
        })
        .await
        .map_err(failed("creating a second goal"))?;
    clients
        .delete(john.id)
        .await
        .map_err(failed("deleting the client"))?;
    let cascaded = || async {
        goal_service
            .of_client(john.id)
            .await
            .is_ok_and(|left| left.is_empty())
    };
    expect(until(soon, cascaded).await, || {
        "the client's goals were not deleted".into()
    })?;
    let gone = goal_service.goal(second.id).await;
    expect(
        matches!(&gone, Err(error) if error.status() == StatusCode::NOT_FOUND),
        || format!("a deleted goal: {gone:?}"),
    )?;
    let refused = goal_service
        .create(GoalForm {
            client_id: john.id,
            name: "Too late".into(),
            target_amount: 1.0,
        })
        .await;
    expect(
        matches!(&refused, Err(error) if error.status() == StatusCode::NOT_FOUND),
        || format!("a goal of a deleted client: {refused:?}"),
    )?;
    shown(&format!(
        "client.deleted: goals {} and {} deleted (goal.deleted each); a new goal for the client gets 404",
        vacation.id, second.id
    ));
    println!("Every step behaved.");
    Ok(())
}
