//! The v1 frames, described for the OpenAPI document (the API lists
//! these schemas; the frames themselves are built in [`super::super::frame`]).

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{AssetId, AssetList, Point};
use crate::stream::frame::ErrorType;

/// A frame from the client: `assets` or `subscribe`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"action": "subscribe", "message": {"assetId": 1}}))]
pub struct WsRequest {
    /// `assets` or `subscribe`.
    pub action: String,
    pub message: WsRequestMessage,
}

/// `{}` for `assets`; `{"assetId": 1}` for `subscribe`.
#[derive(Serialize, ToSchema)]
pub struct WsRequestMessage {
    #[serde(rename = "assetId")]
    pub asset_id: Option<AssetId>,
}

/// The answer to `assets`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"action": "assets", "message": {"assets": [{"id": 1, "name": "EURUSD"}, {"id": 2, "name": "USDJPY"}]}}))]
pub struct WsAssetsFrame {
    /// `assets`
    pub action: String,
    pub message: AssetList,
}

/// The first answer to `subscribe`: the last 30 minutes, oldest first.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"action": "asset_history", "message": {"points": [
    {"assetName": "EURUSD", "time": 1455883484, "assetId": 1, "value": 1.110481}]}}))]
pub struct WsHistoryFrame {
    /// `asset_history`
    pub action: String,
    pub message: WsHistoryMessage,
}

#[derive(Serialize, ToSchema)]
pub struct WsHistoryMessage {
    pub points: Vec<Point>,
}

/// A live point, one per second after the history.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"action": "point", "message":
    {"assetName": "EURUSD", "time": 1455883485, "assetId": 1, "value": 1.110948}}))]
pub struct WsPointFrame {
    /// `point`
    pub action: String,
    pub message: Point,
}

/// Anything the server cannot act on; the connection stays open.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"action": "error", "message": {"error_type": "ValidationError",
    "error_text": "unknown action 'foo'; expected one of: assets, subscribe"}}))]
pub struct WsErrorFrame {
    /// `error`
    pub action: String,
    pub message: WsErrorMessage,
}

#[derive(Serialize, ToSchema)]
pub struct WsErrorMessage {
    pub error_type: ErrorType,
    pub error_text: String,
}
