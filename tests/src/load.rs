//! Load for black-box tests: submitters running flat out against a node, counting what was
//! acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use serde_json::{Value, json};

use crate::node::Node;

/// A loan application of the development policy, under `id`.
pub fn loan(id: &str) -> Value {
    json!({ "type": "loan_application", "id": id, "fields": {
        "applicant_id": format!("P-{id}"), "salary": 61000.5, "amount": 10, "currency": "EUR" } })
}

/// Submitters running flat out through `node` until stopped, each with its own ids
/// (`PREFIX-thread-n`); an answer other than 200, 201 or one of `tolerated` fails the test.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<String>>>,
}

impl Load {
    /// Starts `threads` submitters as `provider-a` of `node`.
    pub fn start(node: &Node, threads: usize, prefix: &str, tolerated: &[u16]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|t| {
                let (client, addr, stop) =
                    (node.client("provider-a"), node.addr, Arc::clone(&stop));
                let (prefix, tolerated) = (prefix.to_owned(), tolerated.to_vec());
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let id = format!("{prefix}-{t}-{n}");
                        n += 1;
                        let body = loan(&id).to_string();
                        match client.request(addr, "POST", "/v1/records", Some(body.as_bytes())) {
                            Ok(a) if a.status == 201 || a.status == 200 => acked.push(id),
                            Ok(a) => assert!(
                                tolerated.contains(&a.status),
                                "{id}: {} {}",
                                a.status,
                                a.text()
                            ),
                            Err(e) => panic!("{id}: no answer: {e}"),
                        }
                    }
                    acked
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops the submitters; the ids acknowledged.
    pub fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect()
    }
}
