use std::io::Write;

use switchboard::config::{DEV_JWT_SECRET, Settings};

fn write_config(body: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(body.as_bytes()).expect("write config");
    file
}

#[test]
fn the_shipped_config_loads_and_serves_sqlite_in_dev_mode() {
    let settings = Settings::load(Some(std::path::Path::new("config.toml"))).expect("config.toml loads");
    assert!(settings.is_sqlite());
    assert!(settings.server.dev_mode);
    assert_eq!(settings.server.port, 8080);
}

#[test]
fn a_bad_value_names_its_key() {
    let file = write_config(
        "[server]\nport = \"eighty\"\n[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n",
    );
    let err = Settings::load(Some(file.path())).expect_err("a string port is refused").to_string();
    assert!(err.contains("server.port") || err.contains("port"), "error names the key: {err}");
}

#[test]
fn a_vapid_key_that_is_no_p256_key_names_its_key() {
    for key in ["not base64!", "AQ", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let file = write_config(&format!(
            "[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n[push]\nvapid_private_key = \"{key}\"\n"
        ));
        let err = Settings::load(Some(file.path())).expect_err("a bad VAPID key is refused").to_string();
        assert!(err.contains("push.vapid_private_key"), "{key}: {err}");
    }
}

#[test]
fn an_unknown_key_is_refused() {
    let file =
        write_config("[server]\nprot = 8080\n[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n");
    let err = Settings::load(Some(file.path())).expect_err("a typo is refused").to_string();
    assert!(err.contains("prot"), "error names the unknown key: {err}");
}

#[test]
fn the_development_secret_is_refused_outside_dev_mode() {
    let file = write_config(&format!("[auth]\njwt_secret = \"{DEV_JWT_SECRET}\"\n"));
    let err = Settings::load(Some(file.path())).expect_err("dev secret refused").to_string();
    assert!(err.contains("auth.jwt_secret"), "{err}");

    let file = write_config("[server]\ndev_mode = false\n");
    let err = Settings::load(Some(file.path())).expect_err("missing secret refused").to_string();
    assert!(err.contains("auth.jwt_secret"), "{err}");

    let file = write_config("[auth]\njwt_secret = \"short\"\n");
    let err = Settings::load(Some(file.path())).expect_err("short secret refused").to_string();
    assert!(err.contains("auth.jwt_secret"), "{err}");
}

#[test]
fn a_missing_config_file_named_on_the_command_line_is_an_error() {
    let err = Settings::load(Some(std::path::Path::new("/nonexistent/switchboard.toml")))
        .expect_err("missing file");
    assert!(err.to_string().contains("does not exist"));
}

#[test]
fn the_binary_exits_with_one_line_naming_the_bad_key() {
    let file = write_config(
        "[database]\nurl = \"mysql://nope\"\n[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n",
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--config")
        .arg(file.path())
        .output()
        .expect("run switchboard");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("database.url"), "stderr names the key: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn environment_variables_override_the_file() {
    // Run in a child process so the variable does not leak into other tests.
    let file = write_config("[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--config")
        .arg(file.path())
        .env("SWITCHBOARD__SERVER__PORT", "not-a-port")
        .output()
        .expect("run switchboard");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("port"), "the env value was used and refused: {stderr}");
}

/// `switchboard` in an empty directory with `env` only; waits for it to exit (bounded).
fn run_in_empty_dir(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .current_dir(dir.path())
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run switchboard")
}

#[tokio::test]
async fn the_binary_serves_from_an_empty_directory_with_environment_variables_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .current_dir(dir.path())
        .env_clear()
        .env("SWITCHBOARD__AUTH__JWT_SECRET", "0123456789abcdef0123456789abcdef")
        .env("SWITCHBOARD__SERVER__PORT", port.to_string())
        .env("SWITCHBOARD__LOG__LEVEL", "error")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start switchboard");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let ready = loop {
        if let Ok(reply) = client.get(format!("http://127.0.0.1:{port}/health/ready")).send().await {
            break reply.status().as_u16();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("switchboard exited with {status} from an empty directory");
        }
        assert!(std::time::Instant::now() < deadline, "switchboard did not listen within 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ready, 200);
    // The embedded defaults: a SQLite file in the working directory.
    assert!(dir.path().join("switchboard.db").exists(), "default SQLite file created");
}

#[test]
fn without_a_file_or_a_secret_the_binary_says_how_to_set_one() {
    let output = run_in_empty_dir(&[], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("SWITCHBOARD__AUTH__JWT_SECRET"), "names the variable: {stderr}");
    assert!(stderr.contains("server.dev_mode"), "says the development secret needs dev_mode: {stderr}");
}

#[test]
fn a_missing_file_named_by_config_is_an_error_naming_the_path() {
    let output = run_in_empty_dir(
        &[("SWITCHBOARD__AUTH__JWT_SECRET", "0123456789abcdef0123456789abcdef")],
        &["--config", "/missing.toml"],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/missing.toml"), "names the path: {stderr}");
}
