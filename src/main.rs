use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchboard::config::Settings;
use switchboard::startup::Application;

/// Switchboard: a realtime chat server.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (default: config.toml in the working directory, if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and WebSocket clients (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print who is online, on which instance, and which instances are alive (needs Redis).
    Presence,
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            // Logging is configured by the settings that just failed to load.
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    switchboard::telemetry::init(&settings.log);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Presence => switchboard::admin::presence_report(&settings).await.map(|report| {
            // The report is this command's output, not a log line.
            print!("{report}");
        }),
        Command::Migrate => switchboard::db::Db::connect(&settings.database)
            .await
            .map(|_| tracing::info!("migrations applied"))
            .map_err(|err| err.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), String> {
    let app = Application::build(settings).await.map_err(|err| err.to_string())?;
    app.run_until_stopped().await.map_err(|err| err.to_string())
}
