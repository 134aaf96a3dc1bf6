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
