//! The admin API. Handlers only translate HTTP to the domain modules and back; every route sits
//! behind [`crate::access::require_admin`].

pub mod audit;
pub mod config;

use serde::Deserialize;
use utoipa::IntoParams;

/// `limit` and `cursor` of a list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// From a previous page's `nextCursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}
