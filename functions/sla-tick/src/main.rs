use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    leadflow_lambda::init_tracing();
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            sla_tick::handle(event.payload).await;
            Ok::<_, Error>(())
        },
    ))
    .await
}
