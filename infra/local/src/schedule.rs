//! EventBridge schedules, which the emulator accepts but never fires: `rate(...)` expressions
//! run here, and the function gets the scheduled event with its `time`, as in AWS.

use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;

use crate::functions::ScheduleHandler;

/// The interval of a `rate(N unit)` expression. `cron(...)` is not run locally.
pub fn rate_interval(expression: &str) -> Option<Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n * secs))
}

/// The event a scheduled rule delivers.
pub fn scheduled_event(
    rule_name: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> EventBridgeEvent<serde_json::Value> {
    let mut e = EventBridgeEvent::<serde_json::Value>::default();
    e.version = Some("0".into());
    e.id = Some(uuid::Uuid::new_v4().to_string());
    e.detail_type = "Scheduled Event".into();
    e.source = "aws.events".into();
    e.account = Some("000000000000".into());
    e.time = Some(at);
    e.region = Some(crate::LOCAL_REGION.into());
    e.resources = Some(vec![format!(
        "arn:aws:events:{}:000000000000:rule/{rule_name}",
        crate::LOCAL_REGION
    )]);
    e.detail = serde_json::json!({});
    e
}

/// Invokes `handler` every `every`, first after one interval (as a new rule does).
pub async fn run(rule_name: String, every: Duration, name: String, handler: ScheduleHandler) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        ticks.tick().await;
        match handler(scheduled_event(&rule_name, chrono::Utc::now())).await {
            Ok(summary) => tracing::debug!(function = %name, %summary, "scheduled run"),
            Err(e) => tracing::warn!(function = %name, error = %e, "scheduled run failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_schedule_invokes_its_function_every_interval_with_the_time() {
        use std::sync::{Arc, Mutex};
        type Seen = Vec<(String, Option<chrono::DateTime<chrono::Utc>>)>;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let record = seen.clone();
        let handler: ScheduleHandler = Arc::new(move |event| {
            record
                .lock()
                .unwrap()
                .push((event.detail_type.clone(), event.time));
            Box::pin(async { Ok("ok".to_owned()) })
        });
        let task = tokio::spawn(run(
            "rule-1".into(),
            Duration::from_secs(60),
            "SlaTickFunction".into(),
            handler,
        ));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            seen.lock().unwrap().is_empty(),
            "the first run comes after one interval"
        );
        tokio::time::sleep(Duration::from_secs(160)).await;
        task.abort();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3, "at 60, 120 and 180 s");
        assert!(seen
            .iter()
            .all(|(kind, time)| kind == "Scheduled Event" && time.is_some()));
    }

    #[test]
    fn rates() {
        assert_eq!(
            rate_interval("rate(1 minute)"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            rate_interval("rate(5 minutes)"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            rate_interval("rate(2 hours)"),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(rate_interval("rate(0 minutes)"), None);
        assert_eq!(rate_interval("cron(0 12 * * ? *)"), None);
    }
}
