//! Test support shared by the integration tests: the fake IBM API is the `fake-ibm` crate.

pub use fake_ibm;
