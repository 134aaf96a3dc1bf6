//! Rate limits (429 with `Retry-After`) and the per-user socket cap. Token buckets (GCRA,
//! from `governor`) kept in memory per instance: behind a load balancer with N instances a
//! client can reach up to N times a limit, which still bounds abuse while needing no Redis
//! round trip per request.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpRequest;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::LimitSettings;
use crate::error::{AppError, AppResult};

type Keyed<K> = DefaultKeyedRateLimiter<K>;

pub struct Limits {
    enabled: bool,
    trust_forwarded_for: bool,
    login_ip: Keyed<IpAddr>,
    login_username: Keyed<String>,
    login_username_ip: Keyed<(String, IpAddr)>,
    register_ip: Keyed<IpAddr>,
    send_user: Keyed<i64>,
    send_ip: Keyed<IpAddr>,
    typing_user: Keyed<i64>,
    max_sockets_per_user: usize,
}

fn quota(per_period: u32, period: Duration) -> Quota {
    let count = NonZeroU32::new(per_period.max(1)).unwrap_or(NonZeroU32::MIN);
    // `count` per `period` on average, all of it usable as a burst.
    Quota::with_period(period / count.get()).unwrap_or_else(|| Quota::per_second(count)).allow_burst(count)
}

impl Limits {
    pub fn new(settings: &LimitSettings) -> Arc<Self> {
        let minute = Duration::from_secs(60);
        let limits = Arc::new(Self {
            enabled: settings.enabled,
            trust_forwarded_for: settings.trust_forwarded_for,
            login_ip: RateLimiter::keyed(quota(settings.login_per_minute_per_ip, minute)),
            login_username: RateLimiter::keyed(quota(settings.login_per_hour_per_username, minute * 60)),
            login_username_ip: RateLimiter::keyed(quota(
                settings.login_per_hour_per_username_and_ip,
                minute * 60,
            )),
            register_ip: RateLimiter::keyed(quota(settings.register_per_hour_per_ip, minute * 60)),
            send_user: RateLimiter::keyed(quota(settings.send_per_minute_per_user, minute)),
            send_ip: RateLimiter::keyed(quota(settings.send_per_minute_per_ip, minute)),
            typing_user: RateLimiter::keyed(quota(settings.typing_per_minute_per_user, minute)),
            max_sockets_per_user: settings.max_sockets_per_user,
        });
        // Forget idle keys now and then, so memory follows active clients, not all clients ever.
        let weak = Arc::downgrade(&limits);
        actix::spawn(async move {
            let mut tick = tokio::time::interval(minute);
            loop {
                tick.tick().await;
                let Some(limits) = weak.upgrade() else { break };
                limits.login_ip.retain_recent();
                limits.login_username.retain_recent();
                limits.login_username_ip.retain_recent();
                limits.register_ip.retain_recent();
                limits.send_user.retain_recent();
                limits.send_ip.retain_recent();
                limits.typing_user.retain_recent();
            }
        });
        limits
    }

    /// The client's address: the peer, or, when the deployment says a proxy sits in front,
    /// the last `X-Forwarded-For` hop: the one that proxy appended (earlier hops come from
    /// the client and could be anything).
    fn ip(&self, req: &HttpRequest) -> IpAddr {
        let forwarded = self
            .trust_forwarded_for
            .then(|| req.headers().get("x-forwarded-for"))
            .flatten()
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .and_then(|first| first.trim().parse().ok());
        forwarded
            .or_else(|| req.peer_addr().map(|addr| addr.ip()))
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    /// Checked before the password is: a guesser over the limit learns nothing. Tight per
    /// (username, address), loose per username: one address cannot lock an account, because
    /// it runs out long before the username does (20 an hour against 100); the per-username
    /// budget bounds guessing spread over many addresses. A locked-out owner is one whose
    /// account is attacked from dozens of addresses at once, as OWASP's guidance accepts.
    pub fn login(&self, req: &HttpRequest, username: &str) -> AppResult<()> {
        if !self.enabled {
            return Ok(());
        }
        let ip = self.ip(req);
        let username = username.trim().to_lowercase();
        check(&self.login_ip, &ip)?;
        check(&self.login_username_ip, &(username.clone(), ip))?;
        check(&self.login_username, &username)
    }

    pub fn register(&self, req: &HttpRequest) -> AppResult<()> {
        if !self.enabled {
            return Ok(());
        }
        check(&self.register_ip, &self.ip(req))
    }

    pub fn send(&self, req: &HttpRequest, user_id: i64) -> AppResult<()> {
        if !self.enabled {
            return Ok(());
        }
        check(&self.send_user, &user_id)?;
        check(&self.send_ip, &self.ip(req))
    }

    /// Typing notices over the limit are dropped silently (there is no reply to refuse).
    pub fn typing(&self, user_id: i64) -> bool {
        !self.enabled || self.typing_user.check_key(&user_id).is_ok()
    }

    /// 429 when the user already has as many sockets on this instance as allowed.
    pub fn sockets(&self, open: usize) -> AppResult<()> {
        if self.enabled && open >= self.max_sockets_per_user {
            return Err(AppError::RateLimited {
                message: format!("at most {} open sockets per user", self.max_sockets_per_user).into(),
                retry_after_seconds: 5,
            });
        }
        Ok(())
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(limiter: &Keyed<K>, key: &K) -> AppResult<()> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        AppError::RateLimited {
            message: "too many requests; try again later".into(),
            retry_after_seconds: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        }
    })
}
