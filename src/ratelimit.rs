//! Security rate limits, counted in the database so every node shares them (SPEC §5).
//! Fixed windows per bucket; a refused attempt reports when to retry.

use crate::context::Context;
use crate::error::Error;

/// A limit: at most `max` hits per `window_s` seconds.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Bucket family, e.g. `unlock-account`.
    pub name: &'static str,
    /// Hits allowed per window.
    pub max: i64,
    /// Window length in seconds.
    pub window_s: i64,
}

/// Delegates looked up by national ID, per appointing account (each answer says whether
/// that ID is registered, so the lookups are few).
pub const DELEGATE_LOOKUP_PER_ACCOUNT: Limit = Limit {
    name: "delegate-lookup",
    max: 10,
    window_s: 3600,
};

/// Emergency accesses per agency (SPEC §6): every attempt counts, answered or not, so
/// breaking the glass cannot be used to sweep through national IDs.
pub const EMERGENCY_PER_AGENCY: Limit = Limit {
    name: "emergency-agency",
    max: 20,
    window_s: 3600,
};

/// Emergency grants one agency may be given for one citizen (the cooldown): one an hour.
pub const EMERGENCY_PER_CITIZEN: Limit = Limit {
    name: "emergency-citizen",
    max: 1,
    window_s: 3600,
};

/// Webhook deliveries per agency (SPEC §6): a flood of events waits rather than hammering
/// the agency's endpoint.
pub const WEBHOOK_PER_AGENCY: Limit = Limit {
    name: "webhook-agency",
    max: 600,
    window_s: 60,
};

/// Registration attempts per client address.
pub const REGISTER_PER_ADDR: Limit = Limit {
    name: "register-addr",
    max: 20,
    window_s: 3600,
};
/// Sign-in attempts per client address.
pub const LOGIN_PER_ADDR: Limit = Limit {
    name: "login-addr",
    max: 50,
    window_s: 900,
};
/// Passphrase attempts per account.
pub const UNLOCK_PER_ACCOUNT: Limit = Limit {
    name: "unlock-account",
    max: 5,
    window_s: 300,
};
/// Passphrase attempts per client address.
pub const UNLOCK_PER_ADDR: Limit = Limit {
    name: "unlock-addr",
    max: 20,
    window_s: 300,
};
/// Recovery attempts per account.
pub const RECOVER_PER_ACCOUNT: Limit = Limit {
    name: "recover-account",
    max: 5,
    window_s: 3600,
};
/// Recovery attempts per client address.
pub const RECOVER_PER_ADDR: Limit = Limit {
    name: "recover-addr",
    max: 20,
    window_s: 3600,
};

/// Refuses at once, without writing, an attempt against a bucket already used up in its
/// current window: a flood of refused attempts then costs reads, not a durable write each
/// (which would queue behind, and slow, every other write — the audit trail's among
/// them). Attempts that may count still go through the one atomic write that decides.
/// Refuses, without writing anything, when `key`'s bucket of `limit` is already used up
/// (see [`already_over`]): for checking several limits before taking from any.
pub async fn refuse_if_over(ctx: &Context, limit: Limit, key: &str) -> Result<(), Error> {
    already_over(ctx, limit, &bucket(limit, key), ctx.clock.now_ms()).await
}

async fn already_over(ctx: &Context, limit: Limit, bucket: &str, now: i64) -> Result<(), Error> {
    match ctx.store.rate_peek(bucket).await? {
        Some((hits, window_start)) if window_start > now - limit.window_s * 1000 => {
            over(limit, hits + 1, window_start, now)
        }
        _ => Ok(()),
    }
}

/// Counts one attempt against `limit` for `key`; refuses with `Retry-After` when over.
pub async fn check(ctx: &Context, limit: Limit, key: &str) -> Result<(), Error> {
    let now = ctx.clock.now_ms();
    already_over(ctx, limit, &bucket(limit, key), now).await?;
    let (hits, window_start) = ctx
        .store
        .rate_hit(&bucket(limit, key), now, limit.window_s * 1000)
        .await?;
    over(limit, hits, window_start, now)
}

/// One attempt taken from a limit before the work it limits, so that concurrent attempts
/// can never together exceed it; [`release`] gives it back when the attempt turns out not
/// to count (the secret was right), so only failures use the limit up.
#[derive(Debug)]
#[must_use = "an attempt not released stays counted"]
pub struct Reservation {
    bucket: String,
    window_start: i64,
}

/// Takes one attempt against `limit` for `key`; refuses with `Retry-After` when none is
/// left.
pub async fn reserve(ctx: &Context, limit: Limit, key: &str) -> Result<Reservation, Error> {
    let now = ctx.clock.now_ms();
    let bucket = bucket(limit, key);
    already_over(ctx, limit, &bucket, now).await?;
    let (hits, window_start) = ctx
        .store
        .rate_hit(&bucket, now, limit.window_s * 1000)
        .await?;
    let taken = Reservation {
        bucket,
        window_start,
    };
    if let Err(refused) = over(limit, hits, window_start, now) {
        // Refused before anything was tried: it does not count.
        release(ctx, taken).await?;
        return Err(refused);
    }
    Ok(taken)
}

/// Gives a reserved attempt back (within the window it was taken in; a new window has
/// started afresh anyway).
pub async fn release(ctx: &Context, taken: Reservation) -> Result<(), Error> {
    ctx.store
        .rate_release(&taken.bucket, taken.window_start)
        .await?;
    Ok(())
}

fn bucket(limit: Limit, key: &str) -> String {
    format!("{}:{key}", limit.name)
}

fn over(limit: Limit, hits: i64, window_start: i64, now: i64) -> Result<(), Error> {
    if hits > limit.max {
        let retry_ms = (window_start + limit.window_s * 1000 - now).max(1000);
        return Err(Error::RateLimited {
            retry_after_s: u64::try_from((retry_ms + 999) / 1000).unwrap_or(1),
        });
    }
    Ok(())
}
