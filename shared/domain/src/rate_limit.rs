//! Per-client rate limits of the public routes: a token bucket per route, client address and
//! form, decided here and kept by the store as one number.
//!
//! The bucket is kept as its *theoretical arrival time* (GCRA): the instant at which the bucket
//! would be full again. A request at `now` is admitted when `max(tat, now)` is at most
//! `(burst - 1)` intervals ahead of `now`, and then moves `tat` one interval further. So a
//! client gets `burst` requests at once and one more per interval after that, and an idle
//! bucket (`tat <= now`, or no record at all) is a full one.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How many requests a client may make: `burst` at once, then `rate` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    rate: u32,
    per: Duration,
    burst: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    #[error(
        "expected `off` or `<n>/<s|min|h>` with an optional ` burst <m>` (e.g. `10/min burst 20`)"
    )]
    Syntax,
    #[error("rate and burst must be at least 1, and at most one request per millisecond")]
    OutOfRange,
}

impl RateLimit {
    pub fn new(rate: u32, per: Duration, burst: u32) -> Result<Self, RateLimitError> {
        let limit = Self { rate, per, burst };
        if rate == 0 || burst == 0 || per.as_millis() < u128::from(rate) {
            return Err(RateLimitError::OutOfRange);
        }
        Ok(limit)
    }

    /// `off` (no limit), or `<n>/<s|min|h>` with an optional ` burst <m>` (`burst` defaults to
    /// `n`): `10/min burst 20` admits 20 requests at once and one more every 6 s.
    pub fn parse(spec: &str) -> Result<Option<Self>, RateLimitError> {
        let spec = spec.trim();
        if spec.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let mut words = spec.split_whitespace();
        let (rate, unit) = words
            .next()
            .and_then(|r| r.split_once('/'))
            .ok_or(RateLimitError::Syntax)?;
        let rate: u32 = rate.parse().map_err(|_| RateLimitError::Syntax)?;
        let per = match unit {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(RateLimitError::Syntax),
        };
        let burst = match (words.next(), words.next(), words.next()) {
            (None, _, _) => rate,
            (Some("burst"), Some(b), None) => b.parse().map_err(|_| RateLimitError::Syntax)?,
            _ => return Err(RateLimitError::Syntax),
        };
        Self::new(rate, per, burst).map(Some)
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The time one request's token takes to come back, rounded up to whole milliseconds so
    /// the limit is never looser than stated.
    pub fn interval_ms(&self) -> i64 {
        let per = i64::try_from(self.per.as_millis()).unwrap_or(i64::MAX);
        (per + i64::from(self.rate) - 1) / i64::from(self.rate.max(1))
    }

    /// How far ahead of `now` a bucket may be and still admit a request.
    fn tolerance_ms(&self) -> i64 {
        self.interval_ms().saturating_mul(i64::from(self.burst) - 1)
    }

    /// What a request at `now` does to the bucket as stored (`None`: no record, a full
    /// bucket). A store applies the step atomically under its condition, and asks again with
    /// what it finds when the condition fails.
    pub fn plan(&self, bucket: Option<Bucket>, now: DateTime<Utc>) -> Step {
        let now_ms = now.timestamp_millis();
        let interval_ms = self.interval_ms();
        match bucket.map(|b| b.tat_ms).filter(|&tat| tat > now_ms) {
            None => Step::Refill {
                now_ms,
                next: Bucket {
                    tat_ms: now_ms + interval_ms,
                },
            },
            Some(tat) if tat - now_ms <= self.tolerance_ms() => Step::Spend {
                now_ms,
                latest_ms: now_ms + self.tolerance_ms(),
                interval_ms,
            },
            Some(tat) => Step::Refuse {
                retry_after: Duration::from_millis(
                    u64::try_from(tat - now_ms - self.tolerance_ms()).unwrap_or(0),
                ),
            },
        }
    }

    /// The verdict of [`RateLimit::plan`] for one request alone: admitted with the bucket to
    /// keep, or refused.
    pub fn decide(&self, bucket: Option<Bucket>, now: DateTime<Utc>) -> Verdict {
        match self.plan(bucket, now) {
            Step::Refill { next, .. } => Verdict::Admit(next),
            Step::Spend { interval_ms, .. } => Verdict::Admit(Bucket {
                tat_ms: bucket.map_or(0, |b| b.tat_ms) + interval_ms,
            }),
            Step::Refuse { retry_after } => Verdict::Refuse { retry_after },
        }
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit} burst {}", self.rate, self.burst)
    }
}

/// A client's bucket: when it will be full again (milliseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub tat_ms: i64,
}

impl Bucket {
    /// When the record may be forgotten: a bucket that is full again is the same as none.
    pub fn expires_at(&self) -> i64 {
        self.tat_ms.div_euclid(1000) + 1
    }
}

/// One request's change to its bucket, each with the condition under which it is right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The bucket is full: store `next`, if it is still full (no record, or `tat <= now_ms`).
    Refill { now_ms: i64, next: Bucket },
    /// The bucket is partly spent: add `interval_ms` to `tat`, if still
    /// `now_ms < tat <= latest_ms`. Concurrent requests of one client each add their own
    /// interval, so none needs to know the others' writes.
    Spend {
        now_ms: i64,
        latest_ms: i64,
        interval_ms: i64,
    },
    /// Spent: nothing to write.
    Refuse { retry_after: Duration },
}

impl Step {
    /// When a bucket written by this step may be forgotten: it is full again by then, however
    /// many concurrent requests spent it (`tat` never exceeds `latest_ms + interval_ms`).
    pub fn expires_at(&self) -> Option<i64> {
        match *self {
            Step::Refill { next, .. } => Some(next.expires_at()),
            Step::Spend {
                latest_ms,
                interval_ms,
                ..
            } => Some(
                Bucket {
                    tat_ms: latest_ms + interval_ms,
                }
                .expires_at(),
            ),
            Step::Refuse { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted; store this bucket.
    Admit(Bucket),
    /// Refused; a request after this wait will be admitted (if nobody else spends the token).
    Refuse { retry_after: Duration },
}

impl Verdict {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(retry_after: Duration) -> u64 {
        retry_after.as_millis().div_ceil(1000).max(1) as u64
    }
}

/// Who a bucket belongs to: a route, a client address and (where the route has one) a form.
/// Only a keyed hash of them is kept, so the store holds no client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey(String);

impl ClientKey {
    /// The bucket of `client` (an IP address as API Gateway reports it) on `route` for `form`.
    /// IPv6 clients are counted per /64, the block one subscriber is usually given, so rotating
    /// addresses within it gains nothing. `secret` keys the hash: without it, the 2^32 IPv4
    /// addresses could be hashed and matched.
    pub fn new(secret: &[u8], route: &str, client: &str, form: Option<&str>) -> Self {
        let client = match client.trim().parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            Ok(IpAddr::V6(v6)) => v6
                .to_ipv4_mapped()
                .map(|v4| v4.to_string())
                .unwrap_or_default(),
            Ok(ip) => ip.to_string(),
            // Not an address (a missing request context): everyone such shares one bucket.
            Err(_) => "unknown".to_owned(),
        };
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .expect("HMAC takes a key of any length");
        for part in [route, "\0", &client, "\0", form.unwrap_or_default()] {
            mac.update(part.as_bytes());
        }
        let digest = mac.finalize().into_bytes();
        let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("RATE#{route}#{hash}"))
    }

    /// The store's key of the bucket (`RATE#<route>#<hash>`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000 + ms).unwrap()
    }

    fn ms(t: DateTime<Utc>) -> i64 {
        t.timestamp_millis() - 1_800_000_000_000
    }

    /// Runs requests at the given instants against one bucket; which were admitted.
    fn run(limit: &RateLimit, times: &[i64]) -> Vec<bool> {
        let mut bucket = None;
        times
            .iter()
            .map(|&t| match limit.decide(bucket, at(t)) {
                Verdict::Admit(b) => {
                    bucket = Some(b);
                    true
                }
                Verdict::Refuse { .. } => false,
            })
            .collect()
    }

    #[test]
    fn parses_the_spec_and_refuses_nonsense() {
        let l = RateLimit::parse("10/min burst 20").unwrap().unwrap();
        assert_eq!((l.rate, l.per, l.burst), (10, Duration::from_secs(60), 20));
        assert_eq!(l.interval_ms(), 6000);
        assert_eq!(l.to_string(), "10/min burst 20");
        let l = RateLimit::parse(" 5/s ").unwrap().unwrap();
        assert_eq!((l.rate, l.burst), (5, 5));
        assert_eq!(RateLimit::parse("OFF"), Ok(None));
        for bad in [
            "",
            "10",
            "10/day",
            "x/min",
            "10/min burst",
            "10/min bursts 3",
            "10/min burst 3 x",
        ] {
            assert_eq!(
                RateLimit::parse(bad),
                Err(RateLimitError::Syntax),
                "{bad:?}"
            );
        }
        for bad in ["0/min", "5/s burst 0", "2000/s"] {
            assert_eq!(
                RateLimit::parse(bad),
                Err(RateLimitError::OutOfRange),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_burst_is_admitted_then_one_request_per_interval() {
        let limit = RateLimit::parse("1/s burst 3").unwrap().unwrap();
        assert_eq!(run(&limit, &[0, 0, 0, 0]), [true, true, true, false]);
        // The fourth waits for the first token to come back.
        assert_eq!(
            run(&limit, &[0, 0, 0, 999, 1000, 1001]),
            [true, true, true, false, true, false]
        );
    }

    #[test]
    fn a_refusal_says_when_to_come_back_and_spends_nothing() {
        let limit = RateLimit::parse("1/s burst 2").unwrap().unwrap();
        let full = limit.decide(None, at(0));
        let Verdict::Admit(b1) = full else { panic!() };
        let Verdict::Admit(b2) = limit.decide(Some(b1), at(0)) else {
            panic!()
        };
        assert_eq!(
            limit.decide(Some(b2), at(250)),
            Verdict::Refuse {
                retry_after: Duration::from_millis(750)
            }
        );
        assert_eq!(Verdict::retry_after_secs(Duration::from_millis(750)), 1);
        assert_eq!(Verdict::retry_after_secs(Duration::from_millis(1001)), 2);
        // Coming back when told to is admitted.
        assert!(matches!(
            limit.decide(Some(b2), at(1000)),
            Verdict::Admit(_)
        ));
    }

    #[test]
    fn an_idle_bucket_refills_to_its_burst_and_no_further() {
        let limit = RateLimit::parse("1/s burst 2").unwrap().unwrap();
        let old = Bucket { tat_ms: ms(at(0)) };
        // An hour idle: the stored instant is long past, and counts as a full bucket.
        let later = 3_600_000;
        assert_eq!(
            limit.decide(Some(old), at(later)),
            limit.decide(None, at(later))
        );
        assert_eq!(run(&limit, &[later, later, later]), [true, true, false]);
        assert_eq!(Bucket { tat_ms: 1_500 }.expires_at(), 2);
    }

    #[test]
    fn client_keys_hide_the_address_and_tell_clients_apart() {
        let k = ClientKey::new(b"secret", "leads", "203.0.113.7", Some("https://a.example"));
        assert!(k.as_str().starts_with("RATE#leads#"), "{}", k.as_str());
        assert!(!k.as_str().contains("203.0.113"));
        assert_eq!(k.as_str().len(), "RATE#leads#".len() + 32);
        let same = ClientKey::new(
            b"secret",
            "leads",
            " 203.0.113.7",
            Some("https://a.example"),
        );
        assert_eq!(k, same);
        for other in [
            ClientKey::new(b"secret", "leads", "203.0.113.8", Some("https://a.example")),
            ClientKey::new(b"secret", "leads", "203.0.113.7", Some("https://b.example")),
            ClientKey::new(b"secret", "leads", "203.0.113.7", None),
            ClientKey::new(
                b"secret",
                "events",
                "203.0.113.7",
                Some("https://a.example"),
            ),
            ClientKey::new(
                b"another",
                "leads",
                "203.0.113.7",
                Some("https://a.example"),
            ),
        ] {
            assert_ne!(k, other);
        }
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_block() {
        let a = ClientKey::new(b"k", "leads", "2001:db8:1:2::1", None);
        let b = ClientKey::new(b"k", "leads", "2001:db8:1:2:ffff::9", None);
        let c = ClientKey::new(b"k", "leads", "2001:db8:1:3::1", None);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            ClientKey::new(b"k", "leads", "::ffff:192.0.2.1", None),
            ClientKey::new(b"k", "leads", "192.0.2.1", None)
        );
    }

    /// What the store does with a step: applies it if its condition holds on `current`, or
    /// hands back `current`.
    fn apply(current: &mut Option<Bucket>, step: Step) -> Result<(), Option<Bucket>> {
        let tat = current.map(|b| b.tat_ms);
        match step {
            Step::Refill { now_ms, next } if tat.is_none_or(|t| t <= now_ms) => {
                *current = Some(next);
                Ok(())
            }
            Step::Spend {
                now_ms,
                latest_ms,
                interval_ms,
            } if tat.is_some_and(|t| t > now_ms && t <= latest_ms) => {
                *current = tat.map(|t| Bucket {
                    tat_ms: t + interval_ms,
                });
                Ok(())
            }
            _ => Err(*current),
        }
    }

    #[test]
    fn concurrent_requests_of_one_client_each_spend_a_token_without_retrying() {
        let limit = RateLimit::parse("1000/s burst 1000").unwrap().unwrap();
        let mut stored = None;
        // Twenty requests that all read the bucket before any wrote: each spends its token.
        let now = at(0);
        let first = limit.plan(None, now);
        assert!(apply(&mut stored, first).is_ok());
        let seen = stored;
        for _ in 0..19 {
            let step = limit.plan(seen, now);
            assert!(matches!(step, Step::Spend { .. }));
            assert!(apply(&mut stored, step).is_ok(), "no retry needed");
        }
        assert_eq!(stored.unwrap().tat_ms, now.timestamp_millis() + 20);
    }

    proptest! {
        /// Requests planned from stale reads and applied under their conditions (retrying with
        /// what the store hands back, as the adapter does) still admit no more than the limit.
        #[test]
        fn stale_reads_cannot_overspend(
            burst in 1u32..20,
            rate in 1u32..100,
            requests in proptest::collection::vec((0i64..3_000, 0usize..4), 1..150),
        ) {
            let limit = RateLimit::new(rate, Duration::from_secs(60), burst).unwrap();
            let mut stored: Option<Bucket> = None;
            let mut history: Vec<Option<Bucket>> = vec![None];
            let mut now = 0;
            let mut admitted = Vec::new();
            for (gap, staleness) in requests {
                now += gap;
                let mut seen = history[history.len().saturating_sub(1 + staleness)];
                for _ in 0..4 {
                    let step = limit.plan(seen, at(now));
                    if matches!(step, Step::Refuse { .. }) {
                        break;
                    }
                    match apply(&mut stored, step) {
                        Ok(()) => {
                            admitted.push(now);
                            break;
                        }
                        Err(current) => seen = current,
                    }
                }
                history.push(stored);
            }
            let interval = limit.interval_ms();
            for (i, start) in admitted.iter().enumerate() {
                for (j, end) in admitted.iter().enumerate().skip(i) {
                    prop_assert!(
                        (j - i + 1) as i64 <= i64::from(burst) + (end - start) / interval,
                        "{} admitted in {} ms, limit {limit}", j - i + 1, end - start
                    );
                }
            }
        }

        /// In any window of length t, at most burst + t / interval requests are admitted
        /// (+1 for the request at the window's start), whatever the arrival pattern.
        #[test]
        fn never_more_than_burst_plus_rate_times_t(
            rate in 1u32..50,
            per in prop_oneof![Just(1u64), Just(60), Just(3600)],
            burst in 1u32..20,
            gaps in proptest::collection::vec(0i64..5_000, 1..200),
        ) {
            let limit = RateLimit::new(rate, Duration::from_secs(per), burst).unwrap();
            let times: Vec<i64> = gaps.iter().scan(0, |t, g| { *t += g; Some(*t) }).collect();
            let admitted: Vec<i64> = times
                .iter()
                .zip(run(&limit, &times))
                .filter_map(|(t, ok)| ok.then_some(*t))
                .collect();
            let interval = limit.interval_ms();
            for (i, start) in admitted.iter().enumerate() {
                for (j, end) in admitted.iter().enumerate().skip(i) {
                    let window = end - start;
                    let allowed = i64::from(burst) + window / interval;
                    prop_assert!(
                        (j - i + 1) as i64 <= allowed,
                        "{} admitted in {window} ms, limit {limit}", j - i + 1
                    );
                }
            }
        }

        /// A client that waits as long as it is told is admitted.
        #[test]
        fn waiting_the_retry_after_is_enough(burst in 1u32..10, rate in 1u32..100) {
            let limit = RateLimit::new(rate, Duration::from_secs(60), burst).unwrap();
            let mut bucket = None;
            let mut now = 0;
            for _ in 0..(burst + 5) {
                match limit.decide(bucket, at(now)) {
                    Verdict::Admit(b) => bucket = Some(b),
                    Verdict::Refuse { retry_after } => {
                        now += retry_after.as_millis() as i64;
                        prop_assert!(matches!(limit.decide(bucket, at(now)), Verdict::Admit(_)));
                        return Ok(());
                    }
                }
            }
            prop_assert!(false, "a burst of {burst} never ran out");
        }
    }
}
