//! An app route's run, owned by the runtime from start to end: the inline attempt,
//! the hand-off to a script thread, the deadline (and abandoning the run past it), the
//! execution record and the metrics. The data plane only maps the outcome to HTTP.
//! Async routes are queued here too, as deliveries the dispatcher runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, Utc};
use picloud_core::model::ExecutionSource;
use picloud_core::{AbandonedId, EventId, ExecutionId};
use picloud_script::{
    FailureKind, RequestInput, RouteResponse, RunInput, RunReport, ScriptFailure,
};
use picloud_store::{Abandoned, App, NewEvent, Script, StoreResult};

use crate::input::{Caller, Subject};
use crate::run::{execution_record, failed, run_script, RunIdentity};
use crate::{payload, ExecError, Runner, Saturated};

/// A call of an app route.
pub struct RouteCall {
    pub app: Arc<App>,
    pub script: Arc<Script>,
    /// `None`: an anonymous call.
    pub caller: Option<Caller>,
    pub request: RequestInput,
}

/// How a sync route's run ended.
#[derive(Debug)]
pub enum RouteOutcome {
    /// The script ran: its answer, or why it has none (an error, a limit, the
    /// deadline). Either way the run is recorded under `execution_id`.
    Ran {
        execution_id: ExecutionId,
        result: Result<RouteResponse, ScriptFailure>,
    },
    /// No slot freed up within the queue timeout (`saturated` says whose limit was
    /// full); nothing ran.
    Busy {
        saturated: Saturated,
        retry_after: Duration,
    },
    /// The server is shutting down; nothing ran.
    ShuttingDown,
}

/// Bodies up to this size are copied for an inline attempt (which may give way and
/// leave the run to a script thread); larger requests go to a script thread at once.
const INLINE_MAX_BODY_BYTES: usize = 16 << 10;

type ThreadRun = Pin<Box<dyn Future<Output = Result<RunReport<RouteResponse>, ExecError>> + Send>>;

impl Runner {
    /// Runs a sync route's script and records the run.
    pub async fn run_route(&self, call: RouteCall) -> RouteOutcome {
        let started_at = picloud_core::now();
        let execution_id = ExecutionId::new();
        let RouteCall {
            app,
            script,
            caller,
            request,
        } = call;
        let small = request.body_raw.len() <= INLINE_MAX_BODY_BYTES;
        let subject = Subject {
            request: Some(request),
            event: None,
            attempt: 1,
            depth: 0,
        };
        let input = self.input(&app, &script, &execution_id, caller, subject);
        let inline = if small {
            self.try_inline(&script, &input, picloud_script::to_route_response)
        } else {
            None
        };
        let ran = match inline {
            Some(report) => Ok(report),
            None => {
                let run = Watched::start(self, &app, &script, &execution_id, started_at, input);
                self.wait(run).await
            }
        };
        let report = match ran {
            Ok(report) => report,
            Err(ExecError::Busy(saturated)) => {
                return RouteOutcome::Busy {
                    saturated,
                    retry_after: self.executor.queue_timeout(),
                }
            }
            Err(ExecError::ShutDown) => return RouteOutcome::ShuttingDown,
            Err(ExecError::Panicked | ExecError::NoThread(_)) => {
                failed(ScriptFailure::error("the run crashed inside the runtime"))
            }
        };
        let who = RunIdentity {
            app: &app,
            script: &script,
            id: &execution_id,
            source: ExecutionSource::Http,
            started_at,
        };
        self.record(execution_record(&who, &report, self.limits.max_log_lines))
            .await;
        RouteOutcome::Ran {
            execution_id,
            result: report.outcome,
        }
    }

    /// Waits for a run on a script thread until its deadline (queue time, run time and
    /// a grace); past it the run is abandoned: the client gets a timeout, the run is
    /// recorded whenever it ends.
    async fn wait(&self, mut run: Watched) -> Result<RunReport<RouteResponse>, ExecError> {
        let limits = &self.limits;
        let wait = self.executor.queue_timeout() + limits.timeout + limits.abandon_grace;
        tokio::select! {
            ran = &mut run => ran,
            () = tokio::time::sleep(wait) => {
                self.note_abandoned(&run);
                Ok(failed(ScriptFailure {
                    kind: FailureKind::Timeout,
                    message: format!("no answer within {} ms; the run was abandoned", wait.as_millis()),
                    line: None,
                }))
            }
        }
    }

    /// The abandoned run still holds its slot: note it for forensics.
    fn note_abandoned(&self, run: &Watched) {
        let entry = Abandoned {
            id: AbandonedId::new(),
            app_id: run.app.id.clone(),
            script_id: run.script.id.clone(),
            execution_id: run.id.clone(),
            started_at: run.started_at,
            abandoned_at: picloud_core::now(),
            reason: "the HTTP side stopped waiting before the run ended".into(),
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.record_abandoned(&entry).await {
                tracing::error!(error = %e, "recording an abandoned run failed");
            }
        });
    }

    /// Queues an async route's call as a delivery (retried, dead-lettered like any);
    /// its id is the event id the client is given.
    pub async fn enqueue_route(&self, call: RouteCall) -> StoreResult<EventId> {
        let id = EventId::new();
        let principal = call.caller.as_ref().map(|c| &c.principal);
        let new = NewEvent {
            id: id.clone(),
            app_id: call.app.id.clone(),
            trigger_id: None,
            script_id: call.script.id.clone(),
            source: ExecutionSource::Http,
            payload: payload::http_payload(&call.request, principal),
            retry: self.limits.retry,
            depth: 0,
            due_at: picloud_core::now(),
        };
        // The store wakes the dispatcher once the call is committed.
        self.store.enqueue_event(new).await?;
        Ok(id)
    }
}

/// A route's run on a script thread, awaited by its request. Dropped before the run
/// ends (abandoned at the deadline, or the client went away and axum dropped the
/// request's future), it hands the run to a task that records it when it ends: every
/// run that started is recorded.
struct Watched {
    run: Option<ThreadRun>,
    runner: Runner,
    app: Arc<App>,
    script: Arc<Script>,
    id: ExecutionId,
    started_at: DateTime<Utc>,
}

impl Watched {
    fn start(
        runner: &Runner,
        app: &Arc<App>,
        script: &Arc<Script>,
        id: &ExecutionId,
        started_at: DateTime<Utc>,
        input: RunInput,
    ) -> Self {
        let timeout = runner.limits.timeout;
        let job = {
            let engine = runner.engine.clone();
            let script = script.clone();
            move || {
                run_script(
                    &engine,
                    &script,
                    input,
                    timeout,
                    picloud_script::to_route_response,
                )
            }
        };
        let executor = runner.executor.clone();
        let app_id = app.id.clone();
        Self {
            run: Some(Box::pin(
                async move { executor.run(app_id.as_str(), job).await },
            )),
            runner: runner.clone(),
            app: app.clone(),
            script: script.clone(),
            id: id.clone(),
            started_at,
        }
    }
}

impl Future for Watched {
    type Output = Result<RunReport<RouteResponse>, ExecError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(run) = self.run.as_mut() else {
            // Polled again after it ended: nothing is left to wait for.
            return Poll::Ready(Err(ExecError::ShutDown));
        };
        let ended = std::task::ready!(run.as_mut().poll(cx));
        self.run = None;
        Poll::Ready(ended)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let Some(run) = self.run.take() else { return };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let runner = self.runner.clone();
        let (app, script) = (self.app.clone(), self.script.clone());
        let (id, started_at) = (self.id.clone(), self.started_at);
        handle.spawn(async move {
            // Refused (busy, shutting down): it never ran, so there is nothing to record.
            let Ok(report) = run.await else { return };
            let who = RunIdentity {
                app: &app,
                script: &script,
                id: &id,
                source: ExecutionSource::Http,
                started_at,
            };
            let max_log_lines = runner.limits.max_log_lines;
            runner
                .record(execution_record(&who, &report, max_log_lines))
                .await;
        });
    }
}
