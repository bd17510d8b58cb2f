//! The `mock-vllm` binary: binds what it is told, prints its ready line, serves, stops on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Kills the child if the test fails before stopping it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_prints_its_address_and_serves_its_models() {
    let child = Command::new(env!("CARGO_BIN_EXE_mock-vllm"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--model",
            "alpha",
            "--model",
            "beta",
            "--token-delay-ms",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let mut line = String::new();
    BufReader::new(running.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .strip_suffix('\n')
        .and_then(|l| l.strip_prefix("mock-vllm listening on "))
        .expect(&line)
        .to_owned();
    let port =
        url.strip_prefix("http://127.0.0.1:").and_then(|p| p.parse::<u16>().ok()).expect(&line);
    assert_ne!(port, 0);

    let models: serde_json::Value =
        reqwest::get(format!("{url}/v1/models")).await.unwrap().json().await.unwrap();
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["alpha", "beta"]);

    #[cfg(unix)]
    {
        // SIGTERM stops it cleanly.
        let pid = running.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        assert!(running.0.wait().unwrap().success());
    }
}
