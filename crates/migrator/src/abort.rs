//! `abort`: drops the capture (the legacy slot and its publication), which ends a live migration
//! before cutover. After a cutover the way back (the service databases' slots) would go with it,
//! and with it any rollback: only when the operator says so.

use platform::Service;
use serde::Serialize;

use crate::cdc;
use crate::cutover;
use crate::endpoints::Endpoints;
use crate::engine::connect;
use crate::engine::journal::state::{self, State};
use crate::error::{MigrateError, Result};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortReport {
    pub slot: String,
    pub slot_dropped: bool,
    pub way_back_dropped: bool,
    /// The migration's state once aborted (`aborted`, or unchanged after a cutover).
    pub state: Option<State>,
}

pub async fn abort(endpoints: &Endpoints, forget_way_back: bool) -> Result<AbortReport> {
    let before = state::current(endpoints).await?;
    let mut way_back = false;
    for service in Service::ALL {
        if let Some(mut conn) = state::existing(service, endpoints.target(service)).await? {
            way_back |= crate::rollback::way_back::info(&mut conn).await?.is_some();
        }
    }
    if way_back && !forget_way_back {
        return Err(MigrateError::Usage(
            "the platform was cut over and its way back is captured: abort would drop it, and \
             with it any rollback; add --forget-way-back once the service databases are trusted"
                .into(),
        ));
    }
    if way_back {
        cutover::drop_way_back(endpoints).await?;
    }
    let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
    let slot = cdc::slot::slot_of(&mut legacy).await?;
    let dropped = cdc::slot::drop(&mut legacy).await?;
    if before.is_some() {
        state::advance(endpoints, State::Aborted, "abort").await?;
    }
    Ok(AbortReport {
        slot,
        slot_dropped: dropped,
        way_back_dropped: way_back,
        state: state::current(endpoints).await?,
    })
}
