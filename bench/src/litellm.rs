//! The LiteLLM proxy of the peer arm: installed from PyPI ([`LITELLM_PACKAGE`]) into a venv
//! under `.tools/litellm` the first time it is needed, then run in front of the mock vLLM in its
//! best configuration on this machine: one uvicorn worker per core, no database, a master key,
//! logging at errors only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use gateway_stack::process::ChildGuard;
use gateway_workspace::command::run_checked;
use gateway_workspace::paths;
use serde_json::{json, Value};

use crate::wrk::Load;

/// The LiteLLM release the peer arm runs. Later releases' `proxy` extra pins
/// `litellm-proxy`/`litellm-enterprise` builds the package index reachable here does not have.
pub const LITELLM_PACKAGE: &str = "litellm[proxy]==1.106.12";

/// How long LiteLLM may take to answer its first request (it imports for ~15 s per worker).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// The `litellm` command of a venv under `.tools/litellm` holding [`LITELLM_PACKAGE`], created
/// (or re-created, when it holds another version) with `python3 -m venv` and pip. Large: only
/// the peer arm asks for it.
pub fn ensure_installed() -> Result<PathBuf> {
    let venv = paths::tools_dir().join("litellm");
    let bin = venv.join("bin").join("litellm");
    // Written last: a venv without it is a half-done install, done again.
    let stamp = venv.join("installed-package.txt");
    if bin.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == LITELLM_PACKAGE) {
        return Ok(bin);
    }
    eprintln!(
        "gateway-bench: installing LiteLLM ({LITELLM_PACKAGE} from PyPI) into {}",
        venv.display()
    );
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| paths::find_on_path(p).is_some())
        .context("LiteLLM is installed with pip into a venv: python3 is needed")?;
    run_checked(Command::new(python).args(["-m", "venv", "--clear"]).arg(&venv))?;
    run_checked(
        Command::new(venv.join("bin").join("python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .arg("--root-user-action=ignore")
            .arg(LITELLM_PACKAGE),
    )?;
    if !bin.is_file() {
        bail!("pip installed {LITELLM_PACKAGE} but {} is missing", bin.display());
    }
    std::fs::write(&stamp, LITELLM_PACKAGE)?;
    Ok(bin)
}

/// A running LiteLLM proxy, in a process group of its own that is killed whole on drop (its
/// uvicorn workers would outlive a killed parent).
pub struct Litellm {
    url: String,
    key: String,
    workers: usize,
    /// Its process group (its parent, uvicorn workers and helpers).
    pub pgid: u32,
    process: ChildGuard,
}

impl Litellm {
    /// Starts `bin` in front of the mock at `mock` (`http://addr`), serving `model`.
    pub async fn start(bin: &Path, dir: &Path, mock: &str, model: &str) -> Result<Litellm> {
        let sub = dir.join("litellm");
        std::fs::create_dir_all(&sub)?;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
        let key = format!("sk-bench-{}-{nanos:08x}", std::process::id());
        let config = sub.join("config.yaml");
        std::fs::write(&config, config_yaml(model, mock, &key))?;
        // LiteLLM's uvicorn reports the port it bound on stderr only: pick a free one first.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut command = tokio::process::Command::new(bin);
        command
            .arg("--config")
            .arg(&config)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--num_workers",
                &workers.to_string(),
            ])
            .current_dir(&sub)
            // Errors only (this also keeps uvicorn's access log off); the bundled model price
            // list instead of fetching one; never a database.
            .env("LITELLM_LOG", "ERROR")
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env_remove("DATABASE_URL")
            .process_group(0);
        let process = ChildGuard::spawn("litellm", command, false)?;
        let pgid = process.pid().context("LiteLLM exited at once")?;
        Ok(Litellm { url: format!("http://127.0.0.1:{port}"), key, workers, pgid, process })
    }

    /// Waits until a chat completion with the master key succeeds.
    pub async fn wait_ready(&mut self, body: &str) -> Result<()> {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut last = String::from("no answer");
        while tokio::time::Instant::now() < deadline {
            if self.process.has_exited() {
                bail!("LiteLLM exited:\n{}", self.process.output_text());
            }
            let sent = client
                .post(self.load(body).url)
                .bearer_auth(&self.key)
                .header("content-type", "application/json")
                .body(body.to_owned())
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    last = format!("{}: {}", resp.status(), resp.text().await.unwrap_or_default())
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!(
            "LiteLLM did not answer a chat completion within {START_TIMEOUT:?} (last: {last})\n{}",
            self.process.output_text()
        )
    }

    pub fn load(&self, body: &str) -> Load {
        Load {
            url: format!("{}/v1/chat/completions", self.url),
            method: "POST",
            body: Some(body.into()),
            bearer: Some(self.key.clone()),
        }
    }

    fn version() -> &'static str {
        let package = LITELLM_PACKAGE;
        package.rsplit_once("==").map_or(package, |(_, v)| v)
    }

    pub fn label(&self) -> String {
        format!("LiteLLM {} ({} uvicorn workers, no database)", Self::version(), self.workers)
    }

    pub fn describe(&self) -> Value {
        json!({"package": LITELLM_PACKAGE, "workers": self.workers, "command": format!("litellm --config config.yaml --host 127.0.0.1 --port <free port> --num_workers {}", self.workers), "env": {"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}})
    }
}

impl Drop for Litellm {
    fn drop(&mut self) {
        // The group is LiteLLM's own (`process_group(0)`): its parent, workers and helpers.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pgid)])
            .status();
    }
}

/// LiteLLM's configuration: `model` routed to the mock as an OpenAI-compatible server.
fn config_yaml(model: &str, mock: &str, key: &str) -> String {
    format!(
        "model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {mock}/v1
      api_key: unused
general_settings:
  master_key: {key}
  disable_spend_logs: true
litellm_settings:
  set_verbose: false
  suppress_debug_info: true
  telemetry: false
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_routes_the_model_to_the_mock_with_a_master_key() {
        let yaml = config_yaml("m", "http://127.0.0.1:9", "sk-x");
        assert!(yaml.contains("model_name: m\n") && yaml.contains("model: openai/m\n"));
        assert!(
            yaml.contains("api_base: http://127.0.0.1:9/v1\n")
                && yaml.contains("master_key: sk-x\n")
        );
        assert!(!yaml.contains("database_url"));
    }
}
