//! Docker credential helper for IBM Cloud Container Registry (design overview: being written).

pub mod configure;
pub mod env;
pub mod jwt;
pub mod mint;
pub mod registry;
pub mod secret;
