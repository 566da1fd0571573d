//! IAM and registry-token HTTP client (being written).
