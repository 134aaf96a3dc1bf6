use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchboard::config::Settings;
use switchboard::startup::Application;

/// jemalloc rather than glibc's malloc: see the note on the dependency in Cargo.toml.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    pin_mmap_threshold();
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

/// Argon2 allocates 19 MiB per hash. glibc raises its mmap threshold after the first such
/// block is freed and then serves the next ones from arenas it never trims: RSS grew by
/// ~13 MiB per registration (543 MiB after 40). A fixed threshold keeps large blocks
/// mmap-backed, returned to the system on free (17 MiB after the same 40).
fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}
