//! The binary's flags and start-up checks.

use super::*;

#[test]
fn retention_flags_default_to_30_days_and_10_million_rows() {
    let cli = Cli::try_parse_from(["control-plane"]).unwrap();
    assert_eq!((cli.log_retention_days, cli.log_retention_rows), (30, 10_000_000));
    assert!(!cli.dev);
    let cli = Cli::try_parse_from([
        "control-plane",
        "--log-retention-days",
        "0",
        "--log-retention-rows",
        "5",
    ])
    .unwrap();
    assert_eq!((cli.log_retention_days, cli.log_retention_rows), (0, 5));
    assert!(Cli::try_parse_from(["control-plane", "--log-retention-days", "-1"]).is_err());
}

#[test]
fn rows_without_identity_keep_a_tenth_of_the_row_budget_unless_told() {
    let retention = Cli::try_parse_from(["control-plane"]).unwrap().retention();
    assert_eq!((retention.max_rows, retention.max_unauthenticated_rows), (10_000_000, 1_000_000));
    let cli = Cli::try_parse_from(["control-plane", "--log-retention-rows", "500"]).unwrap();
    assert_eq!(cli.retention().max_unauthenticated_rows, 50);
    let cli = Cli::try_parse_from(["control-plane", "--log-retention-unauthenticated-rows", "7"])
        .unwrap();
    assert_eq!(cli.retention().max_unauthenticated_rows, 7);
}

#[test]
fn demo_and_placeholder_tokens_are_refused_unless_dev() {
    for (flag, token) in [
        ("--admin-token", "compose-demo-admin-token"),
        ("--state-token", "compose-demo-state-token-change-me"),
        ("--state-token", "xxxxxxxxxxxxxxxxxxxxxxxx"),
    ] {
        let cli = Cli::try_parse_from(["control-plane", flag, token]).unwrap();
        let error = cli.check().unwrap_err().to_string();
        assert!(error.contains(flag) && error.contains("--dev"), "{error}");
        Cli::try_parse_from(["control-plane", flag, token, "--dev"]).unwrap().check().unwrap();
    }
    let random = secrets::new_token();
    Cli::try_parse_from(["control-plane", "--admin-token", &random, "--state-token", &random])
        .unwrap()
        .check()
        .unwrap();
}

#[test]
fn trusted_proxies_default_to_loopback_and_take_a_cidr_list() {
    let cli = Cli::try_parse_from(["control-plane"]).unwrap();
    assert_eq!(
        cli.trusted_proxies,
        vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
    );
    let cli =
        Cli::try_parse_from(["control-plane", "--trusted-proxies", "10.0.0.0/8,fd00::/8"]).unwrap();
    assert_eq!(cli.trusted_proxies.len(), 2);
    assert!(Cli::try_parse_from(["control-plane", "--trusted-proxies", "10.0.0.0/99"]).is_err());
}

#[test]
fn the_admin_api_shares_the_http_listener_unless_given_its_own() {
    assert_eq!(Cli::try_parse_from(["control-plane"]).unwrap().admin_addr, None);
    let cli = Cli::try_parse_from(["control-plane", "--admin-addr", "127.0.0.1:8083"]).unwrap();
    assert_eq!(cli.admin_addr, Some("127.0.0.1:8083".parse().unwrap()));
    let cli =
        Cli::try_parse_from(["control-plane", "--db", "sqlite:///var/lib/gw/gateway.db"]).unwrap();
    assert_eq!(cli.secrets_dir(), PathBuf::from("/var/lib/gw"));
}

#[test]
fn the_file_log_is_off_by_default_and_rotates_only_with_envoys_admin_address() {
    let cli = Cli::try_parse_from(["control-plane"]).unwrap();
    assert!(cli.access_log_file().is_none());
    let cli = Cli::try_parse_from([
        "control-plane",
        "--access-log-file",
        "/l/a.jsonl",
        "--envoy-admin",
        "http://127.0.0.1:9901/",
    ])
    .unwrap();
    let config = cli.access_log_file().unwrap();
    assert_eq!(
        (config.max_bytes, config.envoy_admin.as_deref()),
        (64 << 20, Some("http://127.0.0.1:9901"))
    );
    assert_eq!(config.rotated_path(), PathBuf::from("/l/a.jsonl.1"));
    assert!(
        Cli::try_parse_from(["control-plane", "--envoy-admin", "http://e:1"]).is_err(),
        "nothing to rotate"
    );
    assert!(Cli::try_parse_from([
        "control-plane",
        "--access-log-file",
        "f",
        "--envoy-admin",
        "e:1"
    ])
    .is_err());
    assert!(Cli::try_parse_from([
        "control-plane",
        "--access-log-file",
        "f",
        "--access-log-max-bytes",
        "0"
    ])
    .is_err());
    assert!(
        Cli::try_parse_from(["control-plane", "--access-log-max-bytes", "9"]).is_err(),
        "no file to bound"
    );
    let cli = Cli::try_parse_from([
        "control-plane",
        "--access-log-file",
        "f",
        "--access-log-max-bytes",
        "9",
    ])
    .unwrap();
    assert_eq!(cli.access_log_file().unwrap().max_bytes, 9);
}

#[test]
fn upstreams_are_repeated_or_comma_separated_and_a_model_is_given_once() {
    let cli = Cli::try_parse_from([
        "control-plane",
        "--upstream",
        "a=http://h:1,b=http://h:2",
        "--upstream",
        "c=http://h:3",
    ])
    .unwrap();
    let models: Vec<&str> = cli.upstreams.iter().map(|u| u.model.as_str()).collect();
    assert_eq!((models, cli.reconcile_interval_secs), (vec!["a", "b", "c"], 15));
    cli.check().unwrap();
    let twice = Cli::try_parse_from([
        "control-plane",
        "--upstream",
        "a=http://h:1",
        "--upstream",
        "a=http://h:2",
    ])
    .unwrap();
    assert!(twice.check().is_err());
    assert!(Cli::try_parse_from(["control-plane", "--upstream", "a"]).is_err());
}

#[test]
fn every_flag_names_its_environment_variable_in_help() {
    let help = <Cli as clap::CommandFactory>::command().render_long_help().to_string();
    let vars = [
        "GATEWAY_ACCESS_LOG_FILE",
        "GATEWAY_ACCESS_LOG_MAX_BYTES",
        "GATEWAY_ENVOY_ADMIN",
        "GATEWAY_MODELS",
        "GATEWAY_RECONCILE_INTERVAL_SECS",
        "GATEWAY_ADMIN_ADDR",
        "GATEWAY_SECRETS_DIR",
        "GATEWAY_DEV",
        "GATEWAY_TRUSTED_PROXIES",
        "GATEWAY_LOG_RETENTION_UNAUTHENTICATED_ROWS",
    ];
    for var in vars {
        assert!(help.contains(&format!("[env: {var}")), "{var} missing from\n{help}");
    }
}
