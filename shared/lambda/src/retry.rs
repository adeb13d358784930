//! Losing a race to a concurrent writer (a version conflict, a cancelled transaction) is
//! normal under load; the loser waits a short random moment so the losers do not collide again.

use std::time::Duration;

pub async fn lost_race() {
    let jitter = uuid::Uuid::new_v4().as_u128() % 20;
    tokio::time::sleep(Duration::from_millis(5 + jitter as u64)).await;
}
