//! Building and running the application. Tests build the same `Application` on port 0
//! with their own database, so the code under test is the code that ships.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use actix::Actor;
use actix_web::body::BoxBody;
use actix_web::dev::{Server, ServerHandle, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{Condition, ErrorHandlerResponse, ErrorHandlers, from_fn};
use actix_web::{App, HttpServer, ResponseError, web};

use crate::auth::{Tickets, Tokens};
use crate::config::Settings;
use crate::db::Db;
use crate::domain::events::live::LiveDomain;
use crate::domain::events::writer::Writer;
use crate::domain::files::attachments::Store;
use crate::domain::push::{self, VapidKeys};
use crate::error::{AppError, ErrorCode};
use crate::extract::{not_found, path_error};
use crate::limits::Limits;
use crate::realtime::Live;
use crate::realtime::port::Domain;
use crate::realtime::presence::Presence;
use crate::realtime::relay::{RedisRelay, Relay, RelayCounters};
use crate::realtime::server::ChatServer;
use crate::redis_store::RedisStore;
use crate::{metrics, routes, telemetry};

/// What every handler shares; one per process.
pub struct AppState {
    pub settings: Settings,
    pub db: Db,
    pub tokens: Tokens,
    pub tickets: Tickets,
    pub writer: Writer,
    pub files: Store,
    pub limits: Arc<Limits>,
    /// The live side: routing actors, relay, and the domain's port they read through.
    pub live: Arc<Live>,
    pub presence: Arc<Presence>,
    /// The deployment's Web Push signing key.
    pub vapid: VapidKeys,
    /// This instance's own metrics (the process's are in `metrics::METRICS`).
    pub metrics: metrics::Instance,
    /// Set while the instance drains; readiness turns to 503.
    pub draining: AtomicBool,
    /// Dropped with the state: the push and webhook senders stop with their instance.
    _push_stop: tokio::sync::watch::Sender<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("{0}")]
    Redis(String),
    #[error("metrics: {0}")]
    Metrics(prometheus::Error),
    #[error("attachments.dir: {0}")]
    Files(std::io::Error),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Connects and migrates the database, starts `ChatServer` and binds the listener.
    /// Must run inside an actix system (`#[actix_web::main]` or `#[actix_web::test]`).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let db = Db::connect(&settings.database).await?;
        let vapid = VapidKeys::load(&db.write, &settings.push).await?;
        let instance_id = if settings.server.instance_id.is_empty() {
            format!("sb-{:08x}", rand::random::<u32>())
        } else {
            settings.server.instance_id.clone()
        };
        let files = Store::open(&settings, &instance_id).map_err(StartupError::Files)?;
        let store = if settings.redis.url.is_empty() {
            None
        } else {
            Some(RedisStore::open(&settings.redis.url, &settings.redis.prefix).map_err(StartupError::Redis)?)
        };
        let instance_metrics = metrics::Instance::new().map_err(metrics_error)?;
        let limits = Limits::new(&settings.limits);
        let (live, writer, presence) =
            start_live(&settings, &db, store.clone(), &instance_metrics, limits.clone(), instance_id)?;
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address)
            .map_err(|source| StartupError::Listen { address: address.clone(), source })?;
        let port = listener.local_addr().map_err(|source| StartupError::Listen { address, source })?.port();

        let (push_stop, stopped) = tokio::sync::watch::channel(());
        if settings.push.enabled {
            push::sender::start(
                db.clone(),
                writer.clone(),
                presence.clone(),
                vapid.clone(),
                settings.push.clone(),
                stopped.clone(),
            )
            .await;
        }
        let hooks = crate::domain::bots::webhooks::Setup {
            db: db.clone(),
            writer: writer.clone(),
            presence: presence.clone(),
            bots: settings.bots.clone(),
            away: settings.away.clone(),
            assistant: settings.assistant.clone(),
        };
        crate::domain::bots::webhooks::start(hooks, stopped).await;
        let state = web::Data::new(AppState {
            tokens: Tokens::new(&settings.auth),
            tickets: Tickets::new(store),
            writer,
            files,
            limits,
            db,
            live,
            presence,
            vapid,
            metrics: instance_metrics,
            draining: AtomicBool::new(false),
            _push_stop: push_stop,
            settings,
        });
        let shared = state.clone();
        let origins = state.settings.server.cors_origins.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::PathConfig::default().error_handler(path_error))
                .wrap(ErrorHandlers::new().default_handler_client(contract_body))
                .wrap(Condition::new(!origins.is_empty(), cors(&origins)))
                .wrap(from_fn(crate::body_deadline::limit_body_time))
                .wrap(from_fn(telemetry::requests::trace))
                .configure(routes::configure)
                .default_service(web::to(not_found))
        })
        .shutdown_timeout(state.settings.server.shutdown_timeout_seconds)
        // Argon2 runs on the blocking pool with 19 MiB per hash; few threads keep the
        // allocator from holding that much per thread forever.
        .worker_max_blocking_threads(2)
        // SIGTERM drains through `drain`, which closes sockets first.
        .disable_signals()
        .keep_alive(Duration::from_secs(state.settings.server.keep_alive_seconds))
        .client_disconnect_timeout(Duration::from_secs(5));
        if state.settings.server.workers > 0 {
            server = server.workers(state.settings.server.workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartupError::Listen { address: "listener".into(), source })?;
        telemetry::summarize_refused_connections();
        tracing::info!(port, instance_id = %state.live.instance_id, "listening");
        Ok(Self { port, server: server.run(), state })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped. On SIGTERM or SIGINT the instance drains (see `drain`).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let (state, handle) = (self.state.clone(), self.server.handle());
        actix::spawn(async move {
            if wait_for_stop_signal().await {
                drain(state, handle).await;
            }
        });
        self.server.await
    }
}

fn metrics_error(err: prometheus::Error) -> StartupError {
    StartupError::Metrics(err)
}

/// The live side: one `ChatServer` for the whole process (shared by every worker thread),
/// the relay (in-process or through Redis), presence, and the writer that feeds them; the
/// domain's port is handed to the sessions and presence here.
fn start_live(
    settings: &Settings,
    db: &Db,
    store: Option<Arc<RedisStore>>,
    instance_metrics: &metrics::Instance,
    limits: Arc<Limits>,
    instance_id: String,
) -> Result<(Arc<Live>, Writer, Arc<Presence>), StartupError> {
    let queue_limit = settings.websocket.outbound_queue_bytes;
    let (counts, count_receiver) = tokio::sync::mpsc::unbounded_channel();
    let (chat, relay) = match &store {
        None => {
            let chat = ChatServer::new(queue_limit, None, counts).start();
            (chat.clone(), Relay::Local(chat))
        }
        Some(store) => {
            let (subscriber, commands) = tokio::sync::mpsc::unbounded_channel();
            let chat = ChatServer::new(queue_limit, Some(subscriber), counts).start();
            let counters = RelayCounters::new(instance_metrics).map_err(metrics_error)?;
            (chat.clone(), Relay::Redis(RedisRelay::start(store.clone(), chat, commands, counters)))
        }
    };
    let relay = Arc::new(relay);
    let presence = Presence::new(instance_id.clone(), settings.presence.ttl_seconds, store);
    let writer = Writer::start(db.clone(), relay.clone(), settings.messaging.clone());
    let domain: Arc<dyn Domain> =
        Arc::new(LiveDomain::new(db.clone(), writer.clone(), limits, settings.presence.max_group_members));
    presence.clone().start(count_receiver, domain.clone(), relay.clone());
    let live = Live { domain, chat, relay, settings: settings.websocket.clone(), instance_id };
    Ok((Arc::new(live), writer, presence))
}

async fn wait_for_stop_signal() -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::warn!("cannot listen for SIGTERM/SIGINT; stop the process another way");
        return false;
    };
    tokio::select! {
        _ = terminate.recv() => true,
        _ = interrupt.recv() => true,
    }
}

/// Drains: readiness turns 503 so the load balancer stops sending, every socket is closed
/// with 1012 so clients reconnect elsewhere (with `since`, losing nothing), the listener
/// stops accepting, in-flight requests finish, and the process exits within
/// `server.shutdown_timeout_seconds`.
pub async fn drain(state: web::Data<AppState>, handle: ServerHandle) {
    state.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    let sockets = state.live.chat.send(crate::realtime::server::CloseAll).await.unwrap_or(0);
    tracing::info!(sockets, "draining: sockets closed with 1012");
    // Lets the close frames reach the wire before the workers stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    state.presence.shutdown().await;
    handle.stop(true).await;
}

/// Cross-origin access for the configured origins only (browsers on other sites cannot
/// call the API otherwise); credentials travel in the Authorization header, not cookies.
fn cors(origins: &[String]) -> actix_cors::Cors {
    origins
        .iter()
        .fold(actix_cors::Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods(["GET", "POST", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([header::RETRY_AFTER, header::HeaderName::from_static("x-request-id")])
        .max_age(3600)
}

/// 4xx responses made by actix itself (a path that does not parse, an extractor's own
/// error) get the contract's body.
fn contract_body<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let error = match status.as_u16() {
        404 => AppError::not_found("not found"),
        _ => AppError::bad_request(
            ErrorCode::BadRequest,
            status.canonical_reason().unwrap_or("bad request"),
            None,
        ),
    };
    let mut body: actix_web::HttpResponse<BoxBody> = error.error_response();
    *body.status_mut() = status;
    let (req, _) = res.into_parts();
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, body).map_into_right_body()))
}
