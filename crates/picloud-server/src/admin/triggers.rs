//! Triggers: create per kind, list, enable/disable, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::access::Capability;
use picloud_core::cron::{CronError, CronSchedule};
use picloud_core::model::{DocsOp, FilesOp, KvOp, TriggerKind};
use picloud_core::{ScriptId, TriggerId};
use picloud_store::{NewTrigger, RetryPolicy, StoreError, TopicPattern, Trigger, TriggerConfig};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::List;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery, ListParams};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryDto {
    /// Runs in all, the first included.
    pub max_attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerDto {
    pub id: String,
    pub app_id: String,
    pub kind: TriggerKind,
    pub script_id: String,
    pub enabled: bool,
    /// The trigger's own policy; `null` uses the instance defaults.
    pub retry: Option<RetryDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops: Option<Vec<String>>,
    /// `pubsub`: the topic pattern (exact, `prefix.*` or `*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// `cron`: six fields, with seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// `cron`: the IANA time zone the schedule is read in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `cron`: the window it waits for (`null`: the schedule has no more).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub next_fire_at: Option<Option<DateTime<Utc>>>,
    /// `cron`: when it last queued a delivery (`null`: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub last_fired_at: Option<Option<DateTime<Utc>>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Trigger> for TriggerDto {
    fn from(t: Trigger) -> Self {
        let kind = t.config.kind();
        let (mut collection, mut ops, mut schedule, mut timezone) = (None, None, None, None);
        let mut topic = None;
        match t.config {
            TriggerConfig::Kv {
                collection: c,
                ops: o,
            } => {
                collection = Some(c);
                ops = Some(o.iter().map(|o| o.as_str().to_owned()).collect());
            }
            TriggerConfig::Docs {
                collection: c,
                ops: o,
            } => {
                collection = Some(c);
                ops = Some(o.iter().map(|o| o.as_str().to_owned()).collect());
            }
            TriggerConfig::Files {
                collection: c,
                ops: o,
            } => {
                collection = Some(c);
                ops = Some(o.iter().map(|o| o.as_str().to_owned()).collect());
            }
            TriggerConfig::Pubsub { topic: t } => topic = Some(t),
            TriggerConfig::Cron {
                schedule: s,
                timezone: z,
            } => {
                schedule = Some(s);
                timezone = Some(z);
            }
            TriggerConfig::DeadLetter => {}
        }
        Self {
            id: t.id.into_string(),
            app_id: t.app_id.into_string(),
            kind,
            script_id: t.script_id.into_string(),
            enabled: t.enabled,
            retry: t.retry.map(|r| RetryDto {
                max_attempts: r.max_attempts,
                base_delay_ms: r.base_delay_ms,
                max_delay_ms: r.max_delay_ms,
            }),
            collection,
            ops,
            topic,
            schedule,
            timezone,
            next_fire_at: t.cron.map(|c| c.next_fire_at),
            last_fired_at: t.cron.map(|c| c.last_fired_at),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// The body of every kind; which fields apply depends on the kind.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTrigger {
    /// An endpoint script of this app.
    pub script_id: String,
    pub retry: Option<RetryDto>,
    /// `kv`, `docs`, `files`: the collection to watch.
    pub collection: Option<String>,
    /// `kv`: some of `["set", "delete"]`; `docs`, `files`: some of `["create",
    /// "update", "delete"]`. All of them when left out.
    pub ops: Option<Vec<String>>,
    /// `pubsub`: a topic (`orders`), every topic under a prefix (`orders.*`: also
    /// `orders.eu.new`, not `orders`), or `*` for all.
    pub topic: Option<String>,
    /// `cron`: six fields with seconds (`second minute hour day-of-month month
    /// day-of-week`), like `"0 */5 * * * *"`.
    pub schedule: Option<String>,
    /// `cron`: an IANA time zone, like `"Europe/Berlin"`; `"UTC"` when left out.
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTrigger {
    pub enabled: bool,
}

fn retry_policy(retry: Option<RetryDto>) -> ApiResult<Option<RetryPolicy>> {
    let Some(r) = retry else { return Ok(None) };
    if !(1..=100).contains(&r.max_attempts) {
        return Err(ApiError::invalid(
            "retry.max_attempts",
            "max_attempts must be 1 to 100",
        ));
    }
    if r.max_delay_ms < r.base_delay_ms || r.max_delay_ms > 86_400_000 {
        return Err(ApiError::invalid(
            "retry.max_delay_ms",
            "max_delay_ms must be at least base_delay_ms and at most a day",
        ));
    }
    Ok(Some(RetryPolicy {
        max_attempts: r.max_attempts,
        base_delay_ms: r.base_delay_ms,
        max_delay_ms: r.max_delay_ms,
    }))
}

/// The `collection` and `ops` of a kind that watches a collection; `all` when `ops`
/// is left out.
fn collection_and_ops<Op>(
    kind: TriggerKind,
    req: &CreateTrigger,
    all: &[Op],
) -> ApiResult<(String, Vec<Op>)>
where
    Op: std::str::FromStr + PartialEq + Copy + std::fmt::Display,
    Op::Err: std::fmt::Display,
{
    let collection = req.collection.clone().ok_or_else(|| {
        ApiError::invalid("collection", format!("a {kind} trigger needs a collection"))
    })?;
    picloud_services::KvService::validate_collection_name(&collection)
        .map_err(|e| ApiError::invalid("collection", e.to_string()))?;
    let Some(ops) = &req.ops else {
        return Ok((collection, all.to_vec()));
    };
    if ops.is_empty() {
        let names: Vec<String> = all.iter().map(ToString::to_string).collect();
        return Err(ApiError::invalid(
            "ops",
            format!("ops must name at least one of {}", names.join(", ")),
        ));
    }
    let mut parsed = Vec::new();
    for op in ops {
        let op: Op = op
            .parse()
            .map_err(|e| ApiError::invalid("ops", format!("op {e}")))?;
        if !parsed.contains(&op) {
            parsed.push(op);
        }
    }
    Ok((collection, parsed))
}

/// A cron trigger's schedule and zone, validated (422 naming the field at fault).
fn cron_config(req: &CreateTrigger) -> ApiResult<TriggerConfig> {
    if req.collection.is_some() || req.ops.is_some() {
        return Err(ApiError::invalid(
            "collection",
            "cron triggers take script_id, schedule, timezone and retry",
        ));
    }
    let schedule = req
        .schedule
        .as_deref()
        .map(str::trim)
        .ok_or_else(|| ApiError::invalid("schedule", "a cron trigger needs a schedule"))?;
    let timezone = req.timezone.as_deref().map_or("UTC", str::trim);
    CronSchedule::parse(schedule, timezone).map_err(|e| match e {
        CronError::Schedule(m) => ApiError::invalid("schedule", m),
        CronError::Timezone(m) => ApiError::invalid("timezone", m),
    })?;
    Ok(TriggerConfig::Cron {
        schedule: schedule.to_owned(),
        timezone: timezone.to_owned(),
    })
}

fn config_for(kind: TriggerKind, req: &CreateTrigger) -> ApiResult<TriggerConfig> {
    if kind != TriggerKind::Cron && (req.schedule.is_some() || req.timezone.is_some()) {
        return Err(ApiError::invalid(
            "schedule",
            format!("schedule and timezone belong to cron triggers, not {kind}"),
        ));
    }
    if kind != TriggerKind::Pubsub && req.topic.is_some() {
        return Err(ApiError::invalid(
            "topic",
            format!("topic belongs to pubsub triggers, not {kind}"),
        ));
    }
    match kind {
        TriggerKind::Cron => cron_config(req),
        TriggerKind::Kv => {
            let (collection, ops) = collection_and_ops(kind, req, KvOp::ALL)?;
            Ok(TriggerConfig::Kv { collection, ops })
        }
        TriggerKind::Docs => {
            let (collection, ops) = collection_and_ops(kind, req, DocsOp::ALL)?;
            Ok(TriggerConfig::Docs { collection, ops })
        }
        TriggerKind::Files => {
            let (collection, ops) = collection_and_ops(kind, req, FilesOp::ALL)?;
            Ok(TriggerConfig::Files { collection, ops })
        }
        TriggerKind::Pubsub => {
            if req.collection.is_some() || req.ops.is_some() {
                return Err(ApiError::invalid(
                    "collection",
                    "pubsub triggers take script_id, topic and retry",
                ));
            }
            let topic = req
                .topic
                .as_deref()
                .ok_or_else(|| ApiError::invalid("topic", "a pubsub trigger needs a topic"))?;
            TopicPattern::parse(topic).map_err(|e| ApiError::invalid("topic", e.0))?;
            Ok(TriggerConfig::Pubsub {
                topic: topic.to_owned(),
            })
        }
        TriggerKind::DeadLetter => {
            if req.retry.is_some() {
                return Err(ApiError::invalid(
                    "retry",
                    "a dead-letter handler is never retried; it takes no retry policy",
                ));
            }
            if req.collection.is_some() || req.ops.is_some() {
                return Err(ApiError::invalid(
                    "collection",
                    "dead_letter triggers take only script_id",
                ));
            }
            Ok(TriggerConfig::DeadLetter)
        }
    }
}

/// Create a trigger of `kind` (`kv`, `docs`, `files`, `pubsub`, `cron` or
/// `dead_letter`). The script must be
/// an endpoint of this app.
///
/// (The path segment is named `{trigger}` because the same position holds the trigger
/// id on `PATCH`/`DELETE`; here it is the kind.)
#[utoipa::path(post, path = "/api/v1/admin/apps/{app}/triggers/{trigger}", tag = "triggers",
    request_body = CreateTrigger,
    params(("app" = String, Path, description = "app id or slug"),
        ("trigger" = String, Path, description = "the kind to create: kv, docs, files, pubsub, cron or dead_letter")),
    responses((status = 201, body = TriggerDto), (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("trigger.manage"))))]
pub async fn create_trigger(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, kind)): Path<(String, String)>,
    ApiJson(req): ApiJson<CreateTrigger>,
) -> ApiResult<(StatusCode, Json<TriggerDto>)> {
    let app = caller.app(&state, &app, Capability::TriggerManage).await?;
    let kind: TriggerKind = kind
        .parse()
        .map_err(|e| ApiError::invalid("kind", format!("trigger kind {e}")))?;
    let config = config_for(kind, &req)?;
    let retry = retry_policy(req.retry)?;
    let not_here = || {
        ApiError::invalid(
            "script_id",
            "the script must be an endpoint script of this app",
        )
    };
    let script_id = ScriptId::parse(&req.script_id).map_err(|_| not_here())?;
    let trigger = state
        .store
        .create_trigger(NewTrigger {
            app_id: app.id,
            script_id,
            retry,
            config,
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound => not_here(),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(trigger.into())))
}

/// An app's triggers.
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/triggers", tag = "triggers",
    params(("app" = String, Path, description = "app id or slug"), ListParams),
    responses((status = 200, body = List<TriggerDto>), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.read"))))]
pub async fn list_triggers(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<List<TriggerDto>>> {
    let app = caller.app(&state, &app, Capability::AppRead).await?;
    let page = state.store.list_triggers(&app.id, &params.page()?).await?;
    Ok(Json(List::from_page(page, TriggerDto::from)))
}

fn trigger_id(id: &str) -> ApiResult<TriggerId> {
    TriggerId::parse(id).map_err(|_| ApiError::not_found("trigger"))
}

/// Enable or disable a trigger.
#[utoipa::path(patch, path = "/api/v1/admin/apps/{app}/triggers/{trigger}", tag = "triggers",
    request_body = UpdateTrigger,
    params(("app" = String, Path, description = "app id or slug"),
        ("trigger" = String, Path, description = "trigger id")),
    responses((status = 200, body = TriggerDto), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("trigger.manage"))))]
pub async fn update_trigger(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<UpdateTrigger>,
) -> ApiResult<Json<TriggerDto>> {
    let app = caller.app(&state, &app, Capability::TriggerManage).await?;
    let trigger = state
        .store
        .set_trigger_enabled(&app.id, &trigger_id(&id)?, req.enabled)
        .await
        .map_err(|e| ApiError::from_store(e, "trigger"))?;
    Ok(Json(trigger.into()))
}

/// Delete a trigger; its queued deliveries go with it.
#[utoipa::path(delete, path = "/api/v1/admin/apps/{app}/triggers/{trigger}", tag = "triggers",
    params(("app" = String, Path, description = "app id or slug"),
        ("trigger" = String, Path, description = "trigger id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("trigger.manage"))))]
pub async fn delete_trigger(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = caller.app(&state, &app, Capability::TriggerManage).await?;
    state
        .store
        .delete_trigger(&app.id, &trigger_id(&id)?)
        .await
        .map_err(|e| ApiError::from_store(e, "trigger"))?;
    Ok(StatusCode::NO_CONTENT)
}
