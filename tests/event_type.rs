//! `#[derive(mesh::EventType)]` declares an event's type once.

use mesh::bus::{Event, EventType};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize, mesh::EventType)]
#[event(type = "client.created")]
struct ClientCreated {
    client_id: u64,
}

#[derive(Serialize, Deserialize, mesh::EventType)]
#[event(type = "goal.updated")]
struct GoalUpdated<T> {
    goal: T,
}

#[test]
fn the_derived_type_is_the_events_type_and_routing_key() {
    assert_eq!(ClientCreated::TYPE, "client.created");
    assert_eq!(<GoalUpdated<String>>::TYPE, "goal.updated");
    let event = Event::new("client-service", &ClientCreated { client_id: 9 }).unwrap();
    assert_eq!(event.ty, "client.created");
    assert_eq!(
        event.data::<ClientCreated>().unwrap(),
        ClientCreated { client_id: 9 }
    );
}
