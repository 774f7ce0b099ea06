//! The services' errors as HTTP answers: each service speaks its own error type, and
//! only here (with `error.rs`' conversions of the store's and the runtime's failures)
//! do they become an `ApiError` with a status and a code. The contract's codes and
//! messages are the ones the services' own messages carry.

use crate::error::ApiError;
use crate::log::live::SubscribeError;
use crate::tenancy::tenant::TenantError;

impl From<TenantError> for ApiError {
    fn from(error: TenantError) -> ApiError {
        match error {
            TenantError::NotFound(_) => ApiError::not_found(error.to_string()),
            TenantError::AlreadyExists(_) => ApiError::already_exists(error.to_string()),
            TenantError::Store(error) => ApiError::from(error),
            TenantError::Limits(error) => ApiError::internal(error),
        }
    }
}

impl From<SubscribeError> for ApiError {
    fn from(error: SubscribeError) -> ApiError {
        match error {
            SubscribeError::TooMany {
                max_subscribers, ..
            } => ApiError::over_limit(error.to_string()).with("max_subscribers", max_subscribers),
        }
    }
}
