//! A control plane that fails: killed with SIGKILL under load and started again (every request
//! with a valid key is answered, and the log ends up with exactly one row per request), and a
//! state feed that turns malformed (the last good state keeps serving).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use gateway_e2e::eventually;
use gateway_stack::{FaultKnobs, Stack, StackOptions};
use reqwest::Method;
use serde_json::Value;

use super::support::{assert_openai_error, chat, send_chat, Seen, WAIT};

/// Concurrent clients of the load.
const CLIENTS: usize = 8;

/// What one client request got: its status and, when answered, the counts the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answered {
    status: u16,
    stream: bool,
    prompt: u64,
    completion: u64,
}

/// One request as a client saw it: its id and what it got, or what failed.
type Outcome = Result<(String, Answered), String>;

/// The load: clients sending requests (every other one streamed) until told to stop.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

impl Load {
    fn start(stack: &Stack, key: &str) -> Self {
        let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let clients = (0..CLIENTS)
            .map(|client| {
                let (url, key, http) =
                    (stack.gateway_url.clone(), key.to_owned(), stack.http().clone());
                let (stop, done) = (stop.clone(), done.clone());
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let stream = (client + i) % 2 == 0;
                        let seen = send_chat(
                            &http,
                            &url,
                            &key,
                            &chat("model-a", 1 + (i % 5) as u32, stream),
                        )
                        .await;
                        answers.push(seen.map(|s| answered(s, stream)));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    answers
                })
            })
            .collect();
        Self { stop, done, clients }
    }

    /// Waits until `more` requests beyond those done now are done.
    async fn progress(&self, more: usize) {
        let target = self.done.load(Ordering::Relaxed) + more;
        eventually(&format!("{more} more requests"), WAIT, || async {
            Ok((self.done.load(Ordering::Relaxed) >= target).then_some(()))
        })
        .await
        .unwrap();
    }

    /// Stops the clients; every request's id and what it got (an error names what failed).
    async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for client in self.clients {
            all.extend(client.await.unwrap());
        }
        all
    }
}

fn answered(seen: Seen, stream: bool) -> (String, Answered) {
    let usage = seen.usage().unwrap_or_default();
    let tokens = |k: &str| usage[k].as_u64().unwrap_or(0);
    let answer = Answered {
        status: seen.status,
        stream,
        prompt: tokens("prompt_tokens"),
        completion: tokens("completion_tokens"),
    };
    (seen.request_id, answer)
}

#[tokio::test]
async fn a_control_plane_killed_under_load_loses_no_request_and_no_row_and_doubles_none() {
    let (mut stack, app) = crate::common::stack_with_app().await;
    let load = Load::start(&stack, &app.api_key);
    load.progress(40).await;
    stack.kill_control_plane().await;
    // Served while the control plane is dead: from the filter's last state; logged to the file.
    load.progress(120).await;
    stack.restart_control_plane().await.unwrap();
    load.progress(40).await;
    let answers = load.finish().await;

    let failed: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(failed.is_empty(), "requests with a valid key failed: {failed:#?}");
    let sent: BTreeMap<String, Answered> = answers.into_iter().map(Result::unwrap).collect();
    let refused: Vec<_> = sent.iter().filter(|(_, a)| a.status != 200).collect();
    assert!(refused.is_empty(), "every request with a valid key is answered 200: {refused:#?}");

    eventually("a row for every request", WAIT, || async {
        let rows = stack.all_logs().await?;
        let found = rows
            .iter()
            .filter(|r| r["requestId"].as_str().is_some_and(|id| sent.contains_key(id)))
            .count();
        Ok((found >= sent.len()).then_some(()))
    })
    .await
    .unwrap();
    let rows = stack.all_logs().await.unwrap();
    let mut logged: BTreeMap<String, Answered> = BTreeMap::new();
    for row in
        rows.iter().filter(|r| r["requestId"].as_str().is_some_and(|id| sent.contains_key(id)))
    {
        let got = Answered {
            status: row["status"].as_u64().unwrap_or(0) as u16,
            stream: row["stream"].as_bool().unwrap_or(false),
            prompt: row["promptTokens"].as_u64().unwrap_or(0),
            completion: row["completionTokens"].as_u64().unwrap_or(0),
        };
        let id = row["requestId"].as_str().unwrap().to_owned();
        assert_eq!(row["usageSource"], "reported", "{row}");
        assert!(logged.insert(id, got).is_none(), "two rows for one request: {row}");
    }
    assert_eq!(logged, sent, "each request's row says what its client got");
    stack.stop().await;
}

/// A stack whose control plane is reached through a proxy that can garble the state feed.
async fn proxied_stack() -> Stack {
    let knobs = FaultKnobs { control_plane_proxy: true, ..FaultKnobs::default() };
    Stack::start_with(StackOptions::for_tests(), knobs).await.expect("the stack starts")
}

/// What `key` gets on a fresh connection (so requests reach either worker).
async fn chat_fresh(stack: &Stack, key: &str) -> Seen {
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    send_chat(&fresh, &stack.gateway_url, key, &chat("model-a", 1, false)).await.unwrap()
}

/// Creates an app (through the gateway, which the garbling leaves alone); its key.
async fn new_key(stack: &Stack, name: &str) -> (i64, String) {
    let app = stack.create_app(name).await.unwrap();
    (app.id, app.api_key)
}

#[tokio::test]
async fn a_malformed_state_feed_keeps_the_last_good_state_serving() {
    let stack = proxied_stack().await;
    let (old_app, old_key) = new_key(&stack, "before-the-garbling").await;
    stack.wait_for_key(&old_key).await.unwrap();
    let proxy = stack.control_plane_proxy().unwrap();

    // The state feed (pulls, long polls, catch-ups) answers 200 with a malformed body.
    proxy.garble(&["/internal/state"]);
    let (_, looked_up_key) = new_key(&stack, "created-while-garbled").await;
    eventually("malformed states pulled and refused", WAIT, || async {
        let refused = stack
            .envoy_output()
            .contains("the pulled key state is not usable, keeping the previous one");
        Ok((proxy.garbled_answers() >= 2 && refused).then_some(()))
    })
    .await
    .unwrap();
    let mut old_key_answers = Vec::new();
    for _ in 0..10 {
        let seen = chat_fresh(&stack, &old_key).await;
        assert_eq!(seen.status, 200, "the last good state keeps serving: {seen:?}");
        old_key_answers.push(seen.request_id);
    }
    // A key the held state does not have is looked up (the lookup path is not garbled).
    let seen = chat_fresh(&stack, &looked_up_key).await;
    assert_eq!(seen.status, 200, "a new key is found by a lookup: {seen:?}");

    // Lookups garbled too: a new key is refused as unknown, OpenAI-shaped; the old one works.
    proxy.garble(&["/internal/"]);
    let (_, refused_key) = new_key(&stack, "created-while-all-garbled").await;
    let seen = chat_fresh(&stack, &refused_key).await;
    assert_eq!(seen.status, 401, "{seen:?}");
    assert_openai_error("a key no good state has", &seen.content_type, &seen.body);
    let refusal = seen.request_id;
    assert_eq!(chat_fresh(&stack, &old_key).await.status, 200);

    // A good feed again: the key arrives with the next state.
    proxy.garble(&[]);
    eventually("the refused key accepted once the feed is good", WAIT, || async {
        Ok((chat_fresh(&stack, &refused_key).await.status == 200).then_some(()))
    })
    .await
    .unwrap();

    assert_logged(&stack, old_app, &old_key_answers, &refusal).await;
    assert!(
        stack.envoy_output().contains("credential lookup failed"),
        "the garbled lookup is logged"
    );
    stack.stop().await;
}

/// The old key's requests are logged as served for its app; the refusal as an unknown key.
async fn assert_logged(stack: &Stack, app_id: i64, served: &[String], refusal: &str) {
    let rows = eventually("the rows of the garbled period", WAIT, || async {
        let rows = stack.all_logs().await?;
        let wanted = |id: &str| served.iter().any(|s| s == id) || id == refusal;
        let rows: Vec<Value> =
            rows.into_iter().filter(|r| r["requestId"].as_str().is_some_and(wanted)).collect();
        Ok((rows.len() == served.len() + 1).then_some(rows))
    })
    .await
    .unwrap();
    for row in &rows {
        if row["requestId"] == refusal {
            assert_eq!(
                (row["status"].as_u64(), row["gatewayError"].as_str()),
                (Some(401), Some("invalid_api_key")),
                "{row}"
            );
        } else {
            assert_eq!(
                (row["status"].as_u64(), row["appId"].as_i64()),
                (Some(200), Some(app_id)),
                "{row}"
            );
        }
    }
    // The admin API (through the gateway, not garbled) is untouched by the feed's faults.
    let (status, _) = stack.admin(Method::GET, "/api/apps", None).await.unwrap();
    assert_eq!(status, 200);
}
