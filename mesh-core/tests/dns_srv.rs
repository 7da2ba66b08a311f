//! SRV discovery against a DNS server on loopback that answers as a Kubernetes cluster would.
#![cfg(feature = "dns-srv")]

use std::{net::SocketAddr, time::Duration};

use hickory_resolver::{
    Resolver, TokioResolver,
    config::{ConnectionConfig, NameServerConfig, ResolverConfig},
    net::runtime::TokioRuntimeProvider,
    proto::{
        op::{Message, OpCode},
        rr::{
            Name, RData, Record, RecordType,
            rdata::{A, SRV},
        },
    },
};
use mesh_core::discovery::dns::resolve_srv_with;
use tokio::net::UdpSocket;

const SERVICE: &str = "_http._tcp.inventory.shop.svc.";

/// Answers SRV queries for `SERVICE` (two targets at priority 0, one fallback at priority 10)
/// and A queries for the targets.
async fn dns_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buffer = [0u8; 1500];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buffer).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buffer[..n]) else {
                continue;
            };
            let mut response = Message::response(query.metadata.id, OpCode::Query);
            response.metadata.recursion_desired = query.metadata.recursion_desired;
            response.metadata.recursion_available = true;
            response.metadata.authoritative = true;
            for question in &query.queries {
                response.add_query(question.clone());
                let name = question.name().to_utf8();
                let answer = |rdata| Record::from_rdata(question.name().clone(), 30, rdata);
                match (question.query_type(), name.as_str()) {
                    (RecordType::SRV, SERVICE) => {
                        for (priority, weight, port, target) in [
                            (0, 10, 9001, "pod-a.shop.svc."),
                            (0, 30, 9002, "pod-b.shop.svc."),
                            (10, 10, 9003, "backup.shop.svc."),
                        ] {
                            let target = Name::from_ascii(target).unwrap();
                            response.add_answer(answer(RData::SRV(SRV::new(
                                priority, weight, port, target,
                            ))));
                        }
                    }
                    (RecordType::A, "pod-a.shop.svc.") => {
                        response.add_answer(answer(RData::A(A::new(127, 0, 0, 11))));
                    }
                    (RecordType::A, "pod-b.shop.svc.") => {
                        response.add_answer(answer(RData::A(A::new(127, 0, 0, 12))));
                    }
                    _ => {}
                }
            }
            let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

fn resolver(server: SocketAddr) -> TokioResolver {
    let mut connection = ConnectionConfig::udp();
    connection.port = server.port();
    let name_server = NameServerConfig::new(server.ip(), true, vec![connection]);
    Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![name_server]),
        TokioRuntimeProvider::default(),
    )
    .build()
    .unwrap()
}

#[tokio::test]
async fn srv_records_give_instances_with_their_ports_and_weights() {
    let server = dns_server().await;
    let discovery = resolve_srv_with(
        resolver(server),
        "inventory",
        SERVICE,
        Duration::from_secs(60),
    )
    .await;
    let mut found: Vec<_> = discovery
        .snapshot()
        .iter()
        .map(|i| {
            (
                i.host.clone(),
                i.port,
                i.weight,
                i.metadata["dns.target"].clone(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (
                "127.0.0.11".to_string(),
                9001,
                10,
                "pod-a.shop.svc".to_string()
            ),
            (
                "127.0.0.12".to_string(),
                9002,
                30,
                "pod-b.shop.svc".to_string()
            ),
        ],
        "the priority-10 fallback is not used while priority 0 has targets"
    );
}
