//! Shared set-up of the end-to-end tests: a stack with two mock models and one app.

use gateway_e2e::{CreatedApp, Stack, StackOptions};

/// A started stack and an app whose key the gateway already accepts.
pub async fn stack_with_app() -> (Stack, CreatedApp) {
    stack_with_app_using(StackOptions::for_tests()).await
}

/// The same, with other options.
pub async fn stack_with_app_using(options: StackOptions) -> (Stack, CreatedApp) {
    let stack = Stack::start(options).await.expect("the stack starts");
    let app = stack.create_app("e2e-org").await.expect("an app is created");
    stack.wait_for_key(&app.api_key).await.expect("the key reaches the filter");
    (stack, app)
}

/// The OpenAI client library pointed at the gateway with `key`.
#[allow(dead_code)] // not every test binary uses it
pub fn openai(stack: &Stack, key: &str) -> async_openai::Client<async_openai::config::OpenAIConfig> {
    let config = async_openai::config::OpenAIConfig::new()
        .with_api_base(format!("{}/v1", stack.gateway_url))
        .with_api_key(key);
    async_openai::Client::with_config(config)
}
